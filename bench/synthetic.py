"""Stand-in texts for the benchmarks when the real corpora (../shared/data) are absent: the same size, and the
structure the benchmarked step relies on (words for the oracles and n-grams, nesting for brackets)."""

import numpy as np


def synthetic_prose(size, seed=0):
    """Words of 1-12 letters from a Zipf-distributed lexicon, spaces, commas, full stops and line breaks."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", dtype=np.uint8)
    lexicon = [bytes(rng.choice(letters, rng.integers(1, 13))) for _ in range(20_000)]
    picks = np.minimum(rng.zipf(1.2, size // 5), len(lexicon)) - 1
    seps = rng.choice([b" ", b" ", b" ", b" ", b", ", b". ", b"\n"], len(picks))
    text = b"".join(lexicon[i] + sep for i, sep in zip(picks, seps))
    return np.frombuffer(text[:size], dtype=np.uint8)


def synthetic_code(size, seed=0):
    """Nested C-like blocks: braces, parentheses, brackets and strings at realistic densities."""
    rng = np.random.default_rng(seed)
    out, depth, length = [], 0, 0
    while length < size:
        r = rng.random()
        if r < 0.05 or depth == 0:
            line = "if (x[%d] > 0) {\n" % rng.integers(100)
            depth += 1
        elif r < 0.10:
            line = "}\n"
            depth -= 1
        else:
            line = '\tcall(a, b[%d], "text %d");\n' % (rng.integers(10), rng.integers(1000))
        out.append(line)
        length += len(line)
    return "".join(out).encode()[:size]
