"""What runs write to disk, and how: whole files, checkpoints, records, run names and locks."""
