"""The engine: the workflows the command-line scripts run, built on the network (models/), data (data/) and the
leaf utilities (utils/). Checkpoint I/O (checkpoint.py, safe_load.py, downloads.py), running any weights format
(backends.py, autoshape.py), autoanchor.py, and one package per workflow: train/, val/, predict/, export/,
compare/. cli.py holds what every script shares (exit codes, flags). The scripts only parse arguments."""
