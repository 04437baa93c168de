"""The stages of a training run (jobs.py drives them): stages.py records them; caption.py, prepare.py, training.py,
harvest.py and finish.py do them."""
