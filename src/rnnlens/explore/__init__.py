"""The activation explorer: `rnnlens explore <corpus> [<model>...]`.

store.py   builds and reads the per-model store (every layer's activations over the whole test split, quantised
           to uint8, memory-mapped; the model's top-5 predictions; n-gram and oracle facts per position)
search.py  LSTMVis-style hypothesis search over a store (units on over a span and off around it; other matches)
server.py  the local HTTP server (standard library) and the command line
static/    the offline front-end (plain JavaScript and canvas; nothing is fetched from the internet)
"""
