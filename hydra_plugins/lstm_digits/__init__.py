"""lstm-digits' Hydra plugins. Hydra takes launchers from this namespace package only: the SLURM
launcher with several sweep points per job is `launcher.PackedSlurmLauncher`."""
