"""Training: the main job (`kerascnn train`), its recipe, SAM and schedules.

- `config`: `TrainConfig`, every option of `train` as data (the command
  line's `train` options are generated from it) and its validation;
- `recipe`: the one optimizer / learning-rate schedule / loss / strategy
  factory, shared with `kerascnn.tuning`;
- `run`: `train(...)`, the run in short phases;
- `plugins`: the pluggable callbacks (stability stopping, Learn&Drop);
- `checkpoint`: interrupting (Ctrl-C) and resuming a run;
- `report`: `report.json`, its text form and the plots;
- `workers`: multi-worker runs of `train` (`TF_CONFIG`, input sharding,
  chief-only outputs, a dead peer's `WorkerFailure`);
- `launch`: `kerascnn launch`, N local `kerascnn train --strategy multi_worker`
  processes with their `TF_CONFIG` (`launch(train_args, workers=N)`);
- `sam` (sharpness-aware minimisation, Foret et al., arXiv:2010.01412) and
  `schedules` (the one-cycle schedule, Smith & Topin, arXiv:1708.07120).
"""
