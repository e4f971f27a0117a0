#!/usr/bin/env python3
"""Shows the ext4 effect behind kiln's top-directory flag (docs/performance.md):
creates 5,000 files in 500 directories right after deleting 8,000 files in a
sibling directory, once under a plain parent and once under a parent with
`chattr +T`. On an ext4 without a journal the plain case is ~10x slower.
    scripts/ext4-recently-deleted.py [DIR]   (default: /var/tmp)"""
import os, shutil, subprocess, sys, tempfile, time


def create(root, n):
    start = time.monotonic()
    for i in range(n // 10):
        os.makedirs(os.path.join(root, "p%d" % i))
        for j in range(10):
            with open(os.path.join(root, "p%d" % i, "f%d" % j), "wb") as f:
                f.write(b"x" * 100)
    return time.monotonic() - start


def trial(base, top_dir):
    parent = tempfile.mkdtemp(dir=base)
    try:
        if top_dir:
            subprocess.run(["chattr", "+T", parent], check=True)
        create(os.path.join(parent, "old"), 8000)
        shutil.rmtree(os.path.join(parent, "old"))
        return create(os.path.join(parent, "new"), 5000)
    finally:
        shutil.rmtree(parent)


base = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp"
plain = trial(base, False)
time.sleep(1)
flagged = trial(base, True)
print("5,000 files after 8,000 deletions: plain parent %.2f s, chattr +T parent %.2f s" % (plain, flagged))
