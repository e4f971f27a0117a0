#!/usr/bin/env python3
"""Times whole kiln builds through POST /build (see bench-build.sh)."""
import argparse, hashlib, hmac, io, json, os, socket, statistics, subprocess, tarfile, time, urllib.request

SECRET = b"bench-secret"

E2E = """FROM {reg}/busybox:latest
RUN echo hello > /hello && echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && mkdir -p /home/app/data && chown 1000:1000 /home/app/data && rm /etc/base-marker
COPY src /home/app/src
ENV GREETING="hello world"
WORKDIR /home/app
USER app
CMD ["cat", "/hello"]
"""


def request_tar(config, files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in list(files.items()) + [("com.openfaas.docker.config", json.dumps(config).encode())]:
            info = tarfile.TarInfo(name if name.startswith("com.") else "context/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def post(url, body):
    sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url + "/build", data=body, headers={"X-Build-Signature": sig})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            reply = json.load(resp)
    except urllib.error.HTTPError as e:
        reply = json.load(e)
    wall = time.monotonic() - start
    if reply["status"] != "success":
        raise SystemExit("build failed: %s\n%s" % (reply.get("error"), "\n".join(reply["log"])))
    return wall, reply["duration"]


class Server:
    def __init__(self, kiln, work, name, user=None, extra=()):
        home = os.path.join(work, name + "-home")
        os.makedirs(home, exist_ok=True)
        self.data = os.path.join(home, "data")
        secret = os.path.join(home, "secret")
        with open(secret, "wb") as f:
            f.write(SECRET)
        prefix = []
        if user:
            subprocess.run(["chown", "-R", user, home], check=True)
            prefix = ["runuser", "-u", user, "--"]
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        self.url = "http://127.0.0.1:%d" % port
        self.home = home
        self.proc = subprocess.Popen(
            prefix + [kiln, "serve", "--listen", "127.0.0.1:%d" % port, "--metrics-listen", "", "--data-dir", self.data,
                      "--payload-secret", secret, "--insecure"] + list(extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, HOME=home))
        for _ in range(400):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.025)
        raise SystemExit("kiln did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        subprocess.run(["rm", "-rf", self.home])


def median_ms(xs):
    return "%.1f ms" % (statistics.median(xs) * 1000)


def bench_args(extra=None):
    """The arguments every benchmark script takes."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--runs", type=int, default=5)
    if extra:
        extra(ap)
    return ap.parse_args()


def main():
    a = bench_args(lambda ap: ap.add_argument("--user", default="kiln-test", help="unprivileged user for the per-step figure"))
    files = {"Dockerfile": E2E.format(reg=a.registry).encode(), "src/main.py": b"print('hi')\n", "src/lib/util.py": b"X = 1\n"}
    cold_wall, cold_server = [], []
    for i in range(a.runs):
        srv = Server(a.kiln, a.work, "cold%d" % i)
        body = request_tar({"image": "%s/bench/e2e:cold%d" % (a.registry, i)}, files)
        w, d = post(srv.url, body)
        cold_wall.append(w); cold_server.append(d)
        srv.stop()
    srv = Server(a.kiln, a.work, "warm")
    body = request_tar({"image": "%s/bench/e2e:warm" % a.registry}, files)
    post(srv.url, body)
    warm_wall, warm_server = [], []
    for _ in range(a.runs):
        w, d = post(srv.url, body)
        warm_wall.append(w); warm_server.append(d)
    change_wall, change_server = [], []
    for i in range(a.runs):
        changed = dict(files, **{"src/main.py": ("print('handler %d')\n" % i).encode()})
        w, d = post(srv.url, request_tar({"image": "%s/bench/e2e:warm" % a.registry}, changed))
        change_wall.append(w); change_server.append(d)
    srv.stop()
    steps = 20
    many = "FROM %s/busybox\n" % a.registry + "".join("RUN echo %d > /step\n" % i for i in range(steps))
    # The same steps in the server's network namespace (the entitlement):
    # what a step cost before each got a namespace of its own.
    host = many.replace("RUN echo", "RUN --network=host echo")
    none = "FROM %s/busybox\n" % a.registry
    entitled = ("--allow-insecure-entitlement", "network.host")
    per_step, per_host_step = {}, {}
    for user in (None, a.user):
        per_step[user], per_host_step[user] = [], []
        for i in range(a.runs):
            times = {}
            for name, text in (("many", many), ("host", host), ("none", none)):
                srv = Server(a.kiln, a.work, "step-%s-%d-%s" % (name, i, user or "root"), user, entitled)
                body = request_tar({"image": "%s/bench/steps:x" % a.registry, "skipPush": True}, {"Dockerfile": text.encode()})
                w, d = post(srv.url, body)
                times[name] = d
                srv.stop()
            per_step[user].append((times["many"] - times["none"]) / steps)
            per_host_step[user].append((times["host"] - times["none"]) / steps)
    multi = multi_platform(a)
    print("E2E context (%d runs, medians)" % a.runs)
    print("  cold build+push : client %s, server %s" % (median_ms(cold_wall), median_ms(cold_server)))
    print("  warm rebuild    : client %s, server %s" % (median_ms(warm_wall), median_ms(warm_server)))
    print("  handler change  : client %s, server %s (COPY re-run, layers pushed)" % (median_ms(change_wall), median_ms(change_server)))
    print("  per RUN step    : root %s, unprivileged (%s) %s (helper + overlay + libcontainer + diff + gzip)"
          % (median_ms(per_step[None]), a.user, median_ms(per_step[a.user])))
    print("  per RUN step, host network (no network namespace of its own): root %s, unprivileged %s"
          % (median_ms(per_host_step[None]), median_ms(per_host_step[a.user])))
    print("Cross-compile shape ($BUILDPLATFORM stage + scratch, cold, server time)")
    print("  one platform    : %s" % median_ms(multi["one"]))
    print("  amd64 + arm64   : %s (two images pushed by digest + an index)" % median_ms(multi["two"]))
    if multi["emulated"]:
        print("  per RUN step under qemu (%s): %s" % (FOREIGN, median_ms(multi["emulated"])))
    else:
        print("  per RUN step under qemu: not measured (no binfmt_misc handler for %s)" % FOREIGN)


FOREIGN = "linux/amd64" if os.uname().machine == "aarch64" else "linux/arm64"
CROSS = """FROM --platform=$BUILDPLATFORM {reg}/busybox AS build
ARG TARGETARCH
RUN echo "for $TARGETARCH" > /out
FROM scratch
COPY --from=build /out /out
"""


def multi_platform(a):
    """Cold cross-compile builds for one and for two platforms, and the
    cost of one RUN step for the foreign platform under emulation."""
    out = {"one": [], "two": [], "emulated": []}
    files = {"Dockerfile": CROSS.format(reg=a.registry).encode()}
    for i in range(a.runs):
        for key, platforms in (("one", ["linux/amd64"]), ("two", ["linux/amd64", "linux/arm64"])):
            srv = Server(a.kiln, a.work, "multi-%s-%d" % (key, i))
            config = {"image": "%s/bench/multi:%s%d" % (a.registry, key, i), "platforms": platforms}
            out[key].append(post(srv.url, request_tar(config, files))[1])
            srv.stop()
    arch = FOREIGN.split("/")[1]
    if not qemu_registered(arch):
        return out
    steps = 10
    for i in range(a.runs):
        times = {}
        for name, runs in (("many", steps), ("none", 0)):
            text = "FROM %s/busybox:multi\n" % a.registry + "".join("RUN echo %d > /step\n" % j for j in range(runs))
            srv = Server(a.kiln, a.work, "emu-%s-%d" % (name, i))
            config = {"image": "%s/bench/emu:x" % a.registry, "skipPush": True, "platforms": [FOREIGN]}
            times[name] = post(srv.url, request_tar(config, {"Dockerfile": text.encode()}))[1]
            srv.stop()
        out["emulated"].append((times["many"] - times["none"]) / steps)
    return out


def qemu_registered(arch):
    """Whether Debian's qemu binfmt_misc handler for `arch` is enabled."""
    qemu = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}[arch]
    try:
        with open(os.path.join("/proc/sys/fs/binfmt_misc", qemu)) as f:
            return f.readline().strip() == "enabled"
    except OSError:
        return False


if __name__ == "__main__":
    main()
