"""Choosing the checkpoint of a DiffusionPipe run: TensorBoard scalars (tbevents.py), the smoothed eval-loss choice
and its verdict (choose.py), and loss.png (lossplot.py).

May import: errors only. It must run with nothing but numpy/tensorboard/matplotlib, on a laptop or on a pod."""
