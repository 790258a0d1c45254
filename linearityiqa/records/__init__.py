"""What a run writes to disk: checkpoints, the CSV records of each epoch and each test image,
the names of every file a run or a test writes, the resume states, and the locks that keep two
runs from writing the same files."""
