"""Data: dataset yamls (this folder, as upstream), and the code that reads them: config.py (check_dataset),
datasets.py (training / validation dataloader), augmentations.py, label_cache.py (scanning and caching labels),
label_stats.py, loaders.py (images, videos and streams for detection), shapes.py (the embedded synthetic dataset),
scratch.py (arrays the training items reuse). Imports only leaf utilities (utils/)."""
