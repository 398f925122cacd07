"""Stage 1, pretraining (`urrl pretrain`, train.py; `urrl recipe views`, preview.py), and its building blocks:
the module a method trains (model.py), losses (paper Eq. 1 and the other methods' objectives, losses.py), heads,
momentum copies, queues and memory banks (heads.py, ema.py, blocks.py, common.py, jigsaw.py), schedules and the
online monitors (probes.py, health.py). The methods themselves are plugins, one module each, in methods/.

Importing this package imports nothing else, so a method's settings load without torch."""
