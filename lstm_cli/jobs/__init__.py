"""A training job: one run in MLflow, new, resumed or requeued, as Hydra runs it (`task`), from
its data to its report (`run`), the rules of going on after a stop (`resume_rules`) and of
building on a recorded run (`built_on`). May import the fit, the networks, the data and the
side packages; no command, no sweep."""
