"""Building blocks a model yaml can name, by kind: conv.py (Conv, DWConv, Focus, GhostConv, Concat, ...), csp.py
(Bottleneck, C3 and the CSP family), pooling.py (SPP, SPPF), heads.py (Classify, NMS), experimental.py (CrossConv,
Sum, MixConv2d), mobile.py (ShuffleNetV2 / MobileNetV3). models/registry.py lists them all."""
