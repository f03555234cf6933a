"""Command-line tools: `microcnn-train` (cli/train.py) and `microcnn-predict` (cli/predict.py)."""
