"""What a run writes to disk, and how: every file whole or not at all and never over an input
(writing.py); checkpoints; the CSV records of each epoch and each test image; the name of every
file a run or a test writes; the resume states; and the locks that keep two runs from writing
the same files."""
