"""Detection on images, videos and streams (``detect.py``): :func:`run` and the steps it is made of.

    sources.py    the --source: files / directories / globs / lists / videos / streams -> batches of frames
    model.py      device, weights (DetectMultiBackend) in the inference precision, size, feature dumps
    sink.py       drawing and writing: annotated images and videos, labels/*.txt, crops, a window
    predictor.py  the run: options -> model -> source -> pre-process / infer / NMS per batch -> sink -> summary
"""
from engine.predict.predictor import DetectOptions, Predictor, check_options, run
from engine.predict.sink import ResultSink, SinkOptions, VideoSaver, class_counts, write_label_lines
from engine.predict.sources import Batch, Source, SourceError, is_stream_source, resolve_source

__all__ = ["run", "Predictor", "DetectOptions", "check_options", "ResultSink", "SinkOptions", "VideoSaver",
           "class_counts", "write_label_lines", "Batch", "Source", "SourceError", "is_stream_source",
           "resolve_source"]
