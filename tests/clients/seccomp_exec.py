#!/usr/bin/python3
"""Runs a command under a seccomp filter, as a container runtime would, with
libseccomp (Debian's python3-seccomp; run with /usr/bin/python3).

  seccomp_exec.py --deny-newuser [--user NAME] -- CMD...
      allow everything except creating a user namespace (unshare or clone
      with CLONE_NEWUSER; clone3 answers ENOSYS so libc falls back to clone),
      which is what the runtimes' default profiles do without CAP_SYS_ADMIN.
  seccomp_exec.py --profile FILE [--caps CAP,...] [--user NAME] -- CMD...
      load a Docker/OCI-format JSON profile (what Kubernetes' Localhost
      profiles are): defaultAction, syscalls with names, action, errnoRet,
      args, includes/excludes (caps, arches, minKernel), for a container
      holding --caps (default CAP_SETUID,CAP_SETGID: the kiln chart's).

With --user, the filter is loaded as root first, then the process drops to
NAME (groups, gid, uid, HOME) and execs CMD, as runc does for a pod with
runAsUser, so the setuid newuidmap still works (no no_new_privs)."""
import argparse
import errno
import json
import os
import platform
import pwd
import sys

import seccomp

CLONE_NEWUSER = 0x10000000
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
OPS = {
    "SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT, "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_GT": seccomp.GT, "SCMP_CMP_GE": seccomp.GE, "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}


def action(name, errno_ret=None):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_KILL" or name == "SCMP_ACT_KILL_THREAD":
        return seccomp.KILL
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    raise SystemExit("unsupported action %s" % name)


def kernel_at_least(version):
    have = [int(p) for p in platform.release().split("-")[0].split(".")[:2]]
    want = [int(p) for p in version.split(".")[:2]]
    return have >= want


def applies(rule, caps):
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and ARCH not in inc["arches"]:
        return False
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if inc.get("minKernel") and not kernel_at_least(inc["minKernel"]):
        return False
    if exc.get("arches") and ARCH in exc["arches"]:
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    return True


def profile_filter(path, caps):
    with open(path) as f:
        profile = json.load(f)
    filt = seccomp.SyscallFilter(defaction=action(profile["defaultAction"], profile.get("defaultErrnoRet")))
    for rule in profile.get("syscalls", []):
        if not applies(rule, caps):
            continue
        act = action(rule["action"], rule.get("errnoRet"))
        args = [seccomp.Arg(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in rule.get("args") or []]
        for name in rule["names"]:
            try:
                filt.add_rule(act, name, *args)
            except (RuntimeError, ValueError, OSError):
                pass  # not a syscall of this architecture
    return filt


def deny_newuser_filter():
    filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    eperm = seccomp.ERRNO(errno.EPERM)
    filt.add_rule(eperm, "unshare", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    filt.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    filt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return filt


def main():
    ap = argparse.ArgumentParser()
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--deny-newuser", action="store_true")
    group.add_argument("--profile")
    ap.add_argument("--caps", default="CAP_SETUID,CAP_SETGID")
    ap.add_argument("--user")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        raise SystemExit("no command")
    filt = deny_newuser_filter() if a.deny_newuser else profile_filter(a.profile, set(a.caps.split(",")))
    # libseccomp sets no_new_privs before loading by default, which would
    # stop the setuid newuidmap; runtimes set it only when the pod asks
    # (allowPrivilegeEscalation: false). Root may load without it.
    filt.set_attr(seccomp.Attr.CTL_NNP, 0)
    filt.load()
    if a.user:
        user = pwd.getpwnam(a.user)
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        os.environ["HOME"] = user.pw_dir
        os.environ["USER"] = a.user
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
