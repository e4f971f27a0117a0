#!/usr/bin/env python3
"""Push throughput (see bench-push.sh): a 200 MB incompressible layer made
by a RUN step once, then pushed by kiln to a fresh repository each run (the
build is fully cached and the request tiny, so the time is the push),
against a single monolithic PUT of a blob of the same size with curl, the
registry's own upload rate (tools.md §3)."""
import hashlib, os, statistics, subprocess, time
from bench_build import Server, bench_args, post, request_tar

SIZE = 200 * 1024 * 1024


def curl_put(registry, path, repo):
    digest = "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest()
    loc = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "-X", "POST",
                          "http://%s/v2/%s/blobs/uploads/" % (registry, repo)],
                         capture_output=True, text=True, check=True).stdout
    location = [l.split(" ", 1)[1].strip() for l in loc.splitlines() if l.lower().startswith("location:")][0]
    sep = "&" if "?" in location else "?"
    start = time.monotonic()
    subprocess.run(["curl", "-s", "-f", "-o", "/dev/null", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
                    "--data-binary", "@" + path, "%s%sdigest=%s" % (location, sep, digest)], check=True)
    return time.monotonic() - start


def main():
    a = bench_args()
    big = os.path.join(a.work, "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(SIZE))
    files = {"Dockerfile": ("FROM %s/busybox\nRUN head -c %d /dev/urandom > /big.bin\n" % (a.registry, SIZE)).encode()}
    srv = Server(a.kiln, a.work, "push", None)
    post(srv.url, request_tar({"image": "%s/bench/push-warmup:v1" % a.registry}, files))
    kiln_t, curl_t = [], []
    for i in range(a.runs):
        start = time.monotonic()
        post(srv.url, request_tar({"image": "%s/bench/push-%d:v1" % (a.registry, i)}, files))
        kiln_t.append(time.monotonic() - start)
        curl_t.append(curl_put(a.registry, big, "bench/curl-%d" % i))
    srv.stop()
    mb = SIZE / 1e6
    k, c = statistics.median(kiln_t), statistics.median(curl_t)
    print("push of a 200 MB layer (%d runs, medians; kiln's figure is a whole cached build request)" % a.runs)
    print("  kiln            : %.2f s (%.0f MB/s)" % (k, mb / k))
    print("  curl single PUT : %.2f s (%.0f MB/s)" % (c, mb / c))
    print("  kiln / curl     : %.2fx" % (k / c))


if __name__ == "__main__":
    main()
