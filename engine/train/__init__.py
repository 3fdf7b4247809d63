"""The training workflow (train.py's engine): options, run folder lock, optimizer, Trainer, --evolve, finishing.

    options.py      flag checks, hyperparameters, --weights / --resume / --data, the run folder name
    run_lock.py     one training per run folder (PID + host lock, stale locks taken over)
    model_setup.py  model from --cfg / --weights, state of a resumed run
    torchvision_weights.py  --weights as torchvision ImageNet weights (file or name) for the yolov5-tv-* configs
    optim.py        parameter groups, LR schedule, warmup, freezing, early stopping
    trainer.py      Trainer: before_train / train_in_epoch / after_epoch / after_train
    validation.py   the one call into the validator
    stop.py         SIGINT / SIGTERM -> stop after the current batch
    finish.py       the steps after the last epoch, which never fail a completed training
    evolve.py       --evolve
    workflow.py     main(opt, defaults) and train(hyp, opt, device)
"""
from engine.train.options import TrainError  # noqa: F401
from engine.train.trainer import Trainer  # noqa: F401
from engine.train.workflow import main, train  # noqa: F401
