"""Analysis of the graph IR: costs per op, block and stage (cost.py), report formats
(report.py), comparisons of variants (compare.py), bar charts (plots.py) and block
diagrams (diagram.py). Nothing here imports a framework."""
