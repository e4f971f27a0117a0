#!/usr/bin/env python3
"""kiln against BuildKit (dockerd) and buildah on function-shaped contexts,
side by side in one run (see bench-peers.sh). For each context and builder:
cold build + push (fresh builder state), warm rebuild with no change, a
handler-code change and a dependency change, each pushed; then, as a
replica that never saw the function (empty state, the same registry):
"fresh no change" and "fresh handler change" — kiln with its registry
cache, BuildKit with the inline cache of the pushed image (--cache-from).
Medians with min/max over RUNS runs, builders in rotating order; peak RSS
of the builder's process tree during the cold build. Then throughput: N
different tiny functions (COPY + RUN chmod on busybox), each built once,
then each with a handler change by N clients at once: builds per second and
the builder's peak RSS during the burst."""
import concurrent.futures, json, os, shutil, statistics, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from bench_build import Server, bench_args, post, request_tar  # noqa: E402

# Simulated dependency installs use awk (in Debian's minbase) so every
# builder does the same work without network access.
PYTHON = """FROM {reg}/debian:bookworm-slim
WORKDIR /home/app
COPY requirements.txt .
RUN mkdir -p site-packages && awk -v deps="$(cat requirements.txt)" 'BEGIN{{for(i=0;i<2000;i++){{f="site-packages/mod" i ".py"; print "# " deps "\\nVALUE = " i > f; close(f)}}}}'
COPY index.py handler.py ./
ENV fprocess="python3 index.py"
CMD ["sh", "-c", "ls site-packages | wc -l"]
"""

NODE = """FROM {reg}/debian:bookworm-slim
WORKDIR /home/app
COPY package.json .
RUN seq 0 499 | sed 's|^|node_modules/pkg|' | xargs mkdir -p && awk -v deps="$(cat package.json)" 'BEGIN{{for(i=0;i<5000;i++){{f="node_modules/pkg" (i%500) "/f" i ".js"; print "// " deps "\\nmodule.exports = " i > f; close(f)}}}}' && head -c 8000000 /dev/zero > node_modules/big.bin
COPY index.js handler.js ./
ENV fprocess="node index.js"
CMD ["sh", "-c", "ls node_modules | wc -l"]
"""

GO = """FROM {reg}/debian:bookworm-slim AS build
WORKDIR /src
COPY go.mod .
RUN mkdir -p /go/pkg && awk -v deps="$(cat go.mod)" 'BEGIN{{for(i=0;i<1000;i++){{f="/go/pkg/m" i ".go"; print "// " deps > f; close(f)}}}}'
COPY main.go handler.go ./
RUN cat main.go handler.go > /app && head -c 4000000 /dev/zero >> /app
FROM {reg}/busybox:latest
COPY --from=build /app /usr/bin/app
CMD ["wc", "-c", "/usr/bin/app"]
"""

TINY = """FROM {reg}/busybox:latest
COPY handler.sh /handler.sh
RUN chmod 755 /handler.sh
CMD ["/handler.sh"]
"""

# name: (Dockerfile, files, handler file, dependency file)
CONTEXTS = {
    "tiny": (TINY, {"handler.sh": "#!/bin/sh\necho hi\n"}, "handler.sh", None),
    "python-fn": (PYTHON, {"requirements.txt": "flask==3.0\n", "index.py": "import handler\n",
                           "handler.py": "def handle(req):\n    return req\n"}, "handler.py", "requirements.txt"),
    "node-fn": (NODE, {"package.json": '{"dependencies":{"express":"4"}}', "index.js": "require('./handler')\n",
                       "handler.js": "module.exports = (req) => req\n"}, "handler.js", "package.json"),
    "go-fn": (GO, {"go.mod": "module fn\nrequire example.com/x v1.0.0\n", "main.go": "package main\n",
                   "handler.go": "package main\nfunc Handle() {}\n"}, "handler.go", "go.mod"),
}
SCENARIOS = ["cold", "no change", "handler change", "dependency change", "fresh no change", "fresh handler change"]
# RETIRE: a builder's old state (data dirs, daemon roots) is left in the work
# dir until the script ends: deleting thousands of files between runs makes
# ext4 slow at creating the next ones ("recently deleted" inode scans seen
# in perf), which would charge one builder for another's clean-up.


def tree_rss_kib(root, only=None, skip_root=False):
    """RSS of `root` and its descendants (only those whose comm is in
    `only`; without `root` itself when `skip_root`)."""
    parent, comm = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        comm[int(pid)] = stat[stat.index("(") + 1:stat.rindex(")")]
        parent[int(pid)] = int(stat[stat.rindex(")") + 2:].split()[1])
    pids, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in pids]
        pids.update(kids); frontier.extend(kids)
    total = 0
    for p in pids:
        if (only and comm.get(p) not in only) or (skip_root and p == root):
            continue
        try:
            with open("/proc/%d/status" % p) as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


class Peak:
    """Samples a process tree's RSS every 20 ms while active."""
    def __init__(self, root, only=None, skip_root=False):
        self.root, self.only, self.skip, self.peak, self.stop = root, only, skip_root, 0, False
        self.t = threading.Thread(target=self.run); self.t.start()

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, tree_rss_kib(self.root(), self.only, self.skip))
            time.sleep(0.02)

    def done(self):
        self.stop = True; self.t.join()
        return self.peak / 1024


def write_context(d, dockerfile, files):
    shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
    with open(os.path.join(d, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    for name, data in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(data)


class Kiln:
    """kiln as deployed for audited builds: provenance and SBOM (its
    defaults) and a signing key, so every push is signed."""
    name = "kiln"

    def __init__(self, a):
        self.a, self.srv = a, None
        self.key_dir = os.path.join(a.work, "signing-" + self.name)
        if not os.path.exists(os.path.join(self.key_dir, "signing.key")):
            os.makedirs(self.key_dir, exist_ok=True)
            subprocess.run([a.kiln, "keygen", "--signing", "--out", self.key_dir], check=True, stdout=subprocess.DEVNULL)

    def args(self):
        return ["--signing-key", os.path.join(self.key_dir, "signing.key"), "--registry-cache", "image"]

    def replica(self, tag):
        """A replica with an empty data dir and the same registry cache."""
        self.replicas = getattr(self, "replicas", 0) + 1
        self.fresh("%s-replica%d" % (tag, self.replicas))

    def fresh(self, tag):
        if self.srv:
            self.srv.proc.terminate(); self.srv.proc.wait()  # state stays until the end (see RETIRE)
        name = "peer-%s-%s" % (self.name, tag.replace("/", "-").replace(":", "-"))
        self.srv = Server(self.a.kiln, self.a.work, name, extra=self.args())

    def pid(self):
        return self.srv.proc.pid

    def build(self, ctx, image):
        files = {}
        for root, _, names in os.walk(ctx):
            for n in names:
                p = os.path.join(root, n)
                with open(p, "rb") as f:
                    files[os.path.relpath(p, ctx)] = f.read()
        return post(self.srv.url, request_tar({"image": image}, files))[0]

    def idle_kib(self):
        return tree_rss_kib(self.pid())

    def close(self):
        if self.srv:
            self.srv.stop()


class KilnPlain(Kiln):
    """kiln with no evidence at all: the baseline the evidence's cost is
    measured against."""
    name = "kiln-plain"

    def args(self):
        return ["--provenance=off", "--sbom=false", "--registry-cache", "image"]


class Docker:
    name = "buildkit"
    CLI = "/usr/bin/docker"

    def __init__(self, a):
        self.a, self.proc, self.dir, self.n, self.cache_from = a, None, None, 0, None
        self.env = dict(os.environ, DOCKER_BUILDKIT="1")

    def replica(self, tag):
        """A fresh dockerd that imports the pushed image's inline cache."""
        self.fresh(tag)
        self.cache_from = tag

    def fresh(self, tag):
        self.close()
        self.n += 1
        self.cache_from = None
        self.dir = os.path.join(self.a.work, "dockerd-%d" % self.n)
        os.makedirs(self.dir)
        sock = os.path.join(self.dir, "docker.sock")
        self.env["DOCKER_HOST"] = "unix://" + sock
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
             "--ip-masq=false", "--data-root", self.dir + "/data", "--exec-root", self.dir + "/exec",
             "--pidfile", self.dir + "/docker.pid", "-H", "unix://" + sock, "--insecure-registry", self.a.registry],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            if subprocess.run([self.CLI, "version"], env=self.env, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("dockerd did not start")

    def pid(self):
        return self.proc.pid

    def build(self, ctx, image):
        start = time.monotonic()
        cache = ["--cache-from", self.cache_from] if self.cache_from else []
        run([self.CLI, "build", "-q", "--network", "none", "--build-arg", "BUILDKIT_INLINE_CACHE=1"] + cache +
            ["-t", image, ctx], self.env)
        run([self.CLI, "push", "-q", image], self.env)
        return time.monotonic() - start

    def close(self):
        if self.proc:
            self.proc.terminate(); self.proc.wait()
            self.proc = None


class Buildah:
    name = "buildah"

    def __init__(self, a):
        self.a, self.dir, self.n, self.proc_root = a, None, 0, os.getpid()

    def fresh(self, tag):
        self.close()
        self.n += 1
        self.dir = os.path.join(self.a.work, "buildah-%d" % self.n)
        os.makedirs(self.dir)

    def pid(self):
        return self.proc_root

    def cmd(self):
        return ["buildah", "--root", self.dir + "/root", "--runroot", self.dir + "/run", "--storage-driver", "overlay"]

    def build(self, ctx, image):
        start = time.monotonic()
        run(self.cmd() + ["bud", "-q", "--layers", "--isolation", "chroot", "--network", "host",
                          "--tls-verify=false", "-t", image, ctx])
        run(self.cmd() + ["push", "-q", "--tls-verify=false", image, "docker://" + image])
        return time.monotonic() - start

    def close(self):
        self.dir = None


def run(cmd, env=None):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("%s failed:\n%s%s" % (" ".join(cmd[:3]), p.stdout[-2000:], p.stderr[-2000:]))


def pushed_size(image):
    """Compressed bytes of the pushed image's layers (read back with skopeo)."""
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + image],
                         capture_output=True, text=True, check=True).stdout
    return sum(l["size"] for l in json.loads(out)["layers"])


sizes = {}


def one_run(b, ctx_name, i, a, times, peaks):
    dockerfile, files, handler, deps = CONTEXTS[ctx_name]
    ctx = os.path.join(a.work, "ctx-%s-%s" % (b.name, ctx_name))
    write_context(ctx, dockerfile.format(reg=a.registry), files)
    # A repository per run: a cold build must not find the last run's registry cache.
    image = "%s/bench-%s/%s-r%d:latest" % (a.registry, b.name, ctx_name, i)
    b.fresh(image)
    only = {"kiln", "exe"} if b.name.startswith("kiln") else None
    # kiln: its own processes (the steps' excluded); peers: the whole tree.
    peak = Peak(b.pid, only, skip_root=b.name == "buildah")
    times[(ctx_name, b.name, "cold")].append(b.build(ctx, image))
    peaks[(ctx_name, b.name)].append(peak.done())
    sizes[(ctx_name, b.name)] = pushed_size(image)
    times[(ctx_name, b.name, "no change")].append(b.build(ctx, image))
    with open(os.path.join(ctx, handler), "a") as f:
        f.write("# change %d\n" % i)
    times[(ctx_name, b.name, "handler change")].append(b.build(ctx, image))
    if deps:
        with open(os.path.join(ctx, deps), "a") as f:
            f.write("\n" if deps != "package.json" else " ")
        times[(ctx_name, b.name, "dependency change")].append(b.build(ctx, image))
    if hasattr(b, "replica"):
        b.replica(image)
        times[(ctx_name, b.name, "fresh no change")].append(b.build(ctx, image))
        b.replica(image)
        with open(os.path.join(ctx, handler), "a") as f:
            f.write("# fresh change %d\n" % i)
        times[(ctx_name, b.name, "fresh handler change")].append(b.build(ctx, image))


def throughput(b, a, i, rates, peaks):
    """N functions' handler changes built by N clients at once (after each
    function's first build): builds per second, peak RSS in MiB."""
    funcs = []
    for n in range(a.throughput):
        ctx = os.path.join(a.work, "tp-%s-%d-%d" % (b.name, i, n))
        write_context(ctx, TINY.format(reg=a.registry), {"handler.sh": "#!/bin/sh\necho fn%d\n" % n})
        funcs.append((ctx, "%s/tp-%s-r%d/fn%d:latest" % (a.registry, b.name, i, n)))
    b.fresh("throughput-%d" % i)
    for ctx, image in funcs:
        b.build(ctx, image)
    for ctx, _ in funcs:
        with open(os.path.join(ctx, "handler.sh"), "a") as f:
            f.write("# change\n")
    only = {"kiln", "exe"} if b.name.startswith("kiln") else None
    peak = Peak(b.pid, only, skip_root=b.name == "buildah")
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(funcs)) as pool:
        for f in [pool.submit(b.build, ctx, image) for ctx, image in funcs]:
            f.result()
    rates.append(len(funcs) / (time.monotonic() - start))
    peaks.append(peak.done())


def fmt(xs):
    return "%.2f [%.2f–%.2f]" % (statistics.median(xs), min(xs), max(xs))


def main():
    def extra(ap):
        ap.add_argument("--contexts", default=",".join(CONTEXTS))
        ap.add_argument("--builders", default="kiln,kiln-plain,buildkit,buildah")
        ap.add_argument("--throughput", type=int, default=8, help="clients at once in the throughput run (0: skip)")
    a = bench_args(extra)
    wanted = a.builders.split(",")
    builders = [c(a) for c in (Kiln, KilnPlain, Docker, Buildah) if c.name in wanted]
    builders = [b for b in builders if b.name.startswith("kiln") or shutil.which("dockerd" if b.name == "buildkit" else "buildah")]
    times, peaks, tp_rates, tp_peaks = {}, {}, {}, {}
    for c in a.contexts.split(","):
        for s in SCENARIOS:
            for b in builders:
                times[(c, b.name, s)] = []
        for b in builders:
            peaks[(c, b.name)] = []
    for i in range(a.runs):
        order = builders[i % len(builders):] + builders[:i % len(builders)]
        for c in a.contexts.split(","):
            for b in order:
                one_run(b, c, i, a, times, peaks)
        if a.throughput:
            for b in order:
                throughput(b, a, i, tp_rates.setdefault(b.name, []), tp_peaks.setdefault(b.name, []))
        print("run %d/%d done" % (i + 1, a.runs), file=sys.stderr, flush=True)
    kiln = next(b for b in builders if b.name == "kiln")
    kiln.fresh("idle")
    time.sleep(1)
    idle = kiln.idle_kib() / 1024
    for b in builders:
        b.close()
    names = [b.name for b in builders]
    print("seconds from request to pushed image, median [min–max] of %d runs; ratio = kiln / peer" % a.runs)
    print("| context | scenario | " + " | ".join(names) + " | " + " | ".join("kiln/" + n for n in names[1:]) + " |")
    print("|---" * (2 + 2 * len(names) - 1) + "|")
    for c in a.contexts.split(","):
        for s in SCENARIOS:
            row = [times[(c, n, s)] for n in names]
            if not row[0]:
                continue
            ratios = ["%.2f×" % (statistics.median(row[0]) / statistics.median(r)) for r in row[1:]]
            print("| %s | %s | %s | %s |" % (c, s, " | ".join(fmt(r) for r in row), " | ".join(ratios)))
        print("| %s | pushed layers | %s | |" % (c, " | ".join("%.1f MB" % (sizes[(c, n)] / 1e6) for n in names)))
        mem = ["%.0f MiB" % max(peaks[(c, n)]) for n in names]
        print("| %s | peak RSS, cold | %s | %s |" % (c, " | ".join(mem), " | ".join(
            "%.2f×" % (max(peaks[(c, "kiln")]) / max(peaks[(c, n)])) for n in names[1:])))
    print("kiln server idle RSS (supervisor + server): %.1f MiB" % idle)
    if tp_rates:
        print("throughput: %d functions' handler changes, %d clients at once; builds/s median [min–max], "
              "peak RSS of the builder during the burst" % (a.throughput, a.throughput))
        for n in names:
            print("| %s | %s builds/s | %.0f MiB | %.1f× kiln/%s |" % (
                n, fmt(tp_rates[n]), max(tp_peaks[n]), statistics.median(tp_rates["kiln"]) / statistics.median(tp_rates[n]), n))
    if "kiln-plain" in names:
        print("evidence overhead (provenance + SBOM + signature): kiln - kiln-plain, medians")
        for c in a.contexts.split(","):
            for s in SCENARIOS:
                with_, plain = times[(c, "kiln", s)], times[(c, "kiln-plain", s)]
                if with_ and plain:
                    extra = statistics.median(with_) - statistics.median(plain)
                    print("| %s | %s | %+.3f s | %+.1f %% |" % (c, s, extra, 100 * extra / statistics.median(plain)))


if __name__ == "__main__":
    main()
