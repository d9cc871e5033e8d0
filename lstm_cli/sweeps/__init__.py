"""Sweeps: the parent run and its summary, the tables, what mattered (`importance`), the live
line, SLURM's output. May import the jobs, the fit's pruning rules and the side packages; no
command."""
