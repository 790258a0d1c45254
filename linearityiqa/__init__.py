"""The machinery behind the paper's scripts, grouped by concern.

The repository root holds what a user types and what the paper named (main.py,
test_dataset.py, test_demo.py, IQAmodel.py, IQAloss.py, IQAperformance.py, IQAdataset.py);
this package holds everything they are built on: the data sets (`data`), a training run
(`training`), what a run writes to disk (`records`), how the model runs fast
(`acceleration`), scoring images (`scoring`), what the scripts share (`cli`) and the errors a
user can cause (`errors`). Nothing here imports an entry script.
"""
