"""One training job, stage by stage. driver.py is the stage machine (order, resume, teardown, report); stages.py
records stage results in the state store; prepare.py, caption.py, training.py, harvest.py and finish.py do the
stages; report.py writes runs/<job>/<stamp>/.

May import everything below the CLI (pods, remote, runpod, config, dataset, selection, lock, comfy, state, …);
nothing imports pipeline except commands/ and campaign/."""
