"""Training: config → TRL trainer in a child process (``worker``), queued and watched from the app or
the CLI (``runner``), with metrics in the run directory (``callbacks``) and a pre-launch ``estimate``."""
