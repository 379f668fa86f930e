"""IR and blocks: the graph IR with its network header and shape inference
(graph.py), channel arithmetic (channels.py), one module per block type (blocks/),
and the expansion of a validated spec into the graph (expand.py)."""
