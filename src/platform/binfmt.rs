//! Foreign-platform RUN steps through binfmt_misc: the kernel hands a
//! foreign ELF binary to a registered emulator (Debian's
//! `qemu-user-static`). Only handlers registered with the F flag work in a
//! build container, whose root filesystem has no emulator: F opens the
//! interpreter at registration time.

use super::Platform;
use std::path::Path;

/// Where the kernel lists binfmt_misc handlers.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// How the host runs a platform's binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Natively.
    Native,
    /// Through the named binfmt_misc handler.
    Emulated(String),
}

/// Why the host cannot run a platform's binaries; each names the
/// platform and the remedy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoEmulator {
    /// kiln knows no ELF header for the architecture.
    #[error("RUN for {0}: kiln knows no emulator for this architecture; build it on a {0} machine")]
    UnknownArchitecture(Platform),
    /// A handler exists but lacks the fix-binary flag.
    #[error(
        "RUN for {platform} needs emulation, but binfmt_misc handler {handler:?} lacks the F (fix-binary) flag, so \
         its emulator cannot be found inside a build container; re-register it with F (Debian's \
         qemu-user-static does)"
    )]
    NotFixBinary {
        /// The platform.
        platform: Platform,
        /// The handler's name.
        handler: String,
    },
    /// No enabled handler in the directory.
    #[error(
        "RUN for {platform} needs emulation, but no binfmt_misc handler for {platform} binaries is enabled on \
         this host ({dir}); install and register qemu-user-static (Debian: apt-get install qemu-user-static, with \
         binfmt_misc mounted), build {platform} on a {platform} machine, or cross-compile in a \
         `FROM --platform=$BUILDPLATFORM` stage"
    )]
    NoHandler {
        /// The platform.
        platform: Platform,
        /// The binfmt_misc directory searched.
        dir: String,
    },
}

/// Whether the host can run `platform`'s binaries, per [`BINFMT_DIR`];
/// the error names the platform and the remedy.
pub fn check(platform: &Platform) -> Result<Support, NoEmulator> {
    if platform.is_native() {
        return Ok(Support::Native);
    }
    check_in(Path::new(BINFMT_DIR), platform).map(Support::Emulated)
}

/// Finds an enabled handler for `platform`'s ELF binaries in `dir`.
pub fn check_in(dir: &Path, platform: &Platform) -> Result<String, NoEmulator> {
    let Some(headers) = elf_headers(platform) else {
        return Err(NoEmulator::UnknownArchitecture(platform.clone()));
    };
    let globally_enabled = std::fs::read_to_string(dir.join("status")).map(|s| s.trim() == "enabled").unwrap_or(false);
    let mut unfixed = None;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "status" || name == "register" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let Some(handler) = Handler::parse(&text) else { continue };
        if !handler.enabled || !headers.iter().any(|h| handler.matches(h)) {
            continue;
        }
        if !handler.flags.contains('F') {
            unfixed = Some(name);
            continue;
        }
        if globally_enabled {
            return Ok(name);
        }
    }
    let platform = platform.clone();
    Err(match unfixed {
        Some(handler) => NoEmulator::NotFixBinary { platform, handler },
        None => NoEmulator::NoHandler { platform, dir: dir.display().to_string() },
    })
}

/// One registered handler (magic-type entries only).
struct Handler {
    enabled: bool,
    flags: String,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    fn parse(text: &str) -> Option<Handler> {
        let mut lines = text.lines();
        let enabled = lines.next()? == "enabled";
        let (mut flags, mut magic, mut mask, mut offset) = (String::new(), None, None, None);
        for line in lines {
            match line.split_once(' ') {
                Some(("flags:", v)) => flags = v.trim().to_string(),
                Some(("offset", v)) => offset = v.trim().parse::<usize>().ok(),
                Some(("magic", v)) => magic = hex(v.trim()),
                Some(("mask", v)) => mask = hex(v.trim()),
                _ => {}
            }
        }
        let magic = magic.filter(|_| offset == Some(0))?;
        let mask = mask.unwrap_or_else(|| vec![0xff; magic.len()]);
        Some(Handler { enabled, flags, magic, mask })
    }

    /// The kernel's test: every masked byte of the file equals the magic.
    fn matches(&self, header: &[u8]) -> bool {
        header.len() >= self.magic.len()
            && self
                .magic
                .iter()
                .enumerate()
                .all(|(i, m)| (header[i] ^ m) & self.mask.get(i).copied().unwrap_or(0xff) == 0)
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

/// The first 20 bytes of an executable and of a shared object for
/// `platform` (ELF ident, e_type, e_machine).
fn elf_headers(platform: &Platform) -> Option<[Vec<u8>; 2]> {
    // (64-bit, big-endian, e_machine)
    let (wide, big_endian, machine): (bool, bool, u16) = match platform.architecture.as_str() {
        "amd64" => (true, false, 62),
        "arm64" => (true, false, 183),
        "arm" => (false, false, 40),
        "386" => (false, false, 3),
        "ppc64le" => (true, false, 21),
        "ppc64" => (true, true, 21),
        "s390x" => (true, true, 22),
        "riscv64" => (true, false, 243),
        "mips64le" => (true, false, 8),
        "loong64" => (true, false, 258),
        _ => return None,
    };
    let header = |e_type: u16| {
        let mut h = vec![0x7f, b'E', b'L', b'F', if wide { 2 } else { 1 }, if big_endian { 2 } else { 1 }, 1];
        h.resize(16, 0);
        let field = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        h.extend(field(e_type));
        h.extend(field(machine));
        h
    };
    Some([header(2), header(3)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's qemu-user-static registration for aarch64, as the kernel lists it.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\n\
        magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn binfmt_dir(entries: &[(&str, &str)], status: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), status).unwrap();
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn arm64() -> Platform {
        Platform::parse("linux/arm64").unwrap()
    }

    #[test]
    fn a_registered_fixed_handler_is_found() {
        let dir = binfmt_dir(&[("qemu-aarch64", AARCH64), ("python3.11", "enabled\nextension .pyc\n")], "enabled\n");
        assert_eq!(check_in(dir.path(), &arm64()).unwrap(), "qemu-aarch64");
        let err = check_in(dir.path(), &Platform::parse("linux/s390x").unwrap()).unwrap_err().to_string();
        assert!(err.contains("linux/s390x") && err.contains("qemu-user-static"), "{err}");
    }

    #[test]
    fn missing_disabled_or_unfixed_handlers_are_explained() {
        let none = binfmt_dir(&[], "enabled\n");
        let err = check_in(none.path(), &arm64()).unwrap_err().to_string();
        assert!(err.contains("RUN for linux/arm64") && err.contains("apt-get install qemu-user-static"), "{err}");
        let disabled = binfmt_dir(&[("qemu-aarch64", &AARCH64.replacen("enabled", "disabled", 1))], "enabled\n");
        assert!(check_in(disabled.path(), &arm64()).is_err());
        let off = binfmt_dir(&[("qemu-aarch64", AARCH64)], "disabled\n");
        assert!(check_in(off.path(), &arm64()).is_err());
        let unfixed = binfmt_dir(&[("qemu-aarch64", &AARCH64.replace("flags: POF", "flags: P"))], "enabled\n");
        let err = check_in(unfixed.path(), &arm64()).unwrap_err();
        assert!(matches!(&err, NoEmulator::NotFixBinary { handler, .. } if handler == "qemu-aarch64"));
        assert!(err.to_string().contains("F (fix-binary)"), "{err}");
        let absent = Path::new("/nonexistent/binfmt");
        assert!(check_in(absent, &arm64()).unwrap_err().to_string().contains("/nonexistent/binfmt"));
    }

    #[test]
    fn the_host_platform_needs_no_emulation() {
        assert_eq!(check(&Platform::host()).unwrap(), Support::Native);
    }
}
