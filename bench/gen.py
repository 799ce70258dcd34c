#!/usr/bin/env python3
"""Deterministic test data for bench/: the same seed gives the same bytes on any machine.

  gen.py tree DIR FILES BIG_MIB [SEED]
      FILES small files of 1-4 KiB of random bytes in DIR/dNN/sN/fNNNNN.bin (100 per folder,
      1,000 per top folder), plus DIR/big/blobN.bin: BIG_MIB MiB of random bytes in 5 files.
  gen.py app DIR FILES [SEED]
      a Python web application of about FILES files: DIR/app/wsgi.py (a Flask app), VERSION and
      DIR/app/pNN/mNNN.py modules of 1-4 KiB (a docstring of random words and functions).
  gen.py payload DIR MIB [SEED]
      MIB MiB of hex text of random bytes (gzip -6 leaves 57% of it) in files of
      64-512 KiB under DIR/: the body of the W7 pull image, compressible like a distribution.
"""
import os
import random
import sys

MIB = 1 << 20


def tree(root, files, big_mib, seed):
    rng = random.Random(seed)
    for i in range(files):
        sub = os.path.join(root, f"d{i // 1000:02d}", f"s{i // 100 % 10}")
        if i % 100 == 0:
            os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:05d}.bin"), "wb") as f:
            f.write(rng.randbytes(rng.randint(1024, 4096)))
    if big_mib:
        os.makedirs(os.path.join(root, "big"), exist_ok=True)
        left = big_mib
        for n in range(5):
            share = left // (5 - n)
            left -= share
            with open(os.path.join(root, "big", f"blob{n}.bin"), "wb") as f:
                for _ in range(share):
                    f.write(rng.randbytes(MIB))


WORDS = "build layer image cache step stage copy context file hash store push pull run".split()


def app(root, files, seed):
    rng = random.Random(seed)
    pkg = os.path.join(root, "app")
    os.makedirs(pkg, exist_ok=True)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write('"""The W11 benchmark application."""\n')
    with open(os.path.join(pkg, "VERSION"), "w") as f:   # what the W11e edit rewrites
        f.write("1.0.0" + " " * 26 + "\n")
    with open(os.path.join(pkg, "wsgi.py"), "w") as f:
        f.write("from flask import Flask\n\napplication = Flask(__name__)\n\n\n"
                "@application.route('/')\ndef index():\n    return 'ok'\n")
    for i in range(max(files - 3, 0)):
        sub = os.path.join(pkg, f"p{i // 100:02d}")
        if i % 100 == 0:
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, "__init__.py"), "w") as f:
                f.write("")
        body = ['"""' + " ".join(rng.choice(WORDS) for _ in range(rng.randint(100, 500))) + '"""\n']
        for n in range(rng.randint(1, 8)):
            body.append(f"\n\ndef f{n}(x):\n    return x * {rng.randint(1, 999)} + {n}\n")
        with open(os.path.join(sub, f"m{i:04d}.py"), "w") as f:
            f.write("".join(body))


def payload(root, mib, seed):
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    left, n = mib * MIB, 0
    while left > 0:
        size = min(left, rng.randint(64, 512) * 1024)
        sub = os.path.join(root, f"p{n // 100:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"part{n:04d}.txt"), "w") as f:
            f.write(rng.randbytes(size // 2).hex())
        left -= size
        n += 1


def main(argv):
    if len(argv) >= 4 and argv[1] == "tree":
        tree(argv[2], int(argv[3]), int(argv[4]), int(argv[5]) if len(argv) > 5 else 42)
    elif len(argv) >= 4 and argv[1] == "app":
        app(argv[2], int(argv[3]), int(argv[4]) if len(argv) > 4 else 11)
    elif len(argv) >= 4 and argv[1] == "payload":
        payload(argv[2], int(argv[3]), int(argv[4]) if len(argv) > 4 else 7)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
