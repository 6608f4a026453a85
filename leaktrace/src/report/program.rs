//! Which modules are the program's own code, judged by what a module is
//! rather than by the directory it sits in: a binary installed by a
//! distribution (PostgreSQL's `/usr/lib/postgresql/15/bin/postgres`,
//! nginx's modules under `/usr/lib/nginx/modules`) is as much "the program"
//! as one built in /tmp.
//!
//! Not the program's: the shared libraries the dynamic loader finds on its
//! search path (the directories of `/etc/ld.so.conf` and the loader's own
//! defaults, where libc, libssl and friends live), and language runtimes
//! (the interpreter or VM executable and its own libraries), whose frames
//! stand for whatever program they run. Everything else, the executable
//! and the libraries it carries beside it or loads as plugins, is.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Executables of language runtimes, by name; a version may follow
/// (`python3.11`, `php8.2`, `php-fpm8.2`, `ruby3.1`).
const RUNTIME_EXECUTABLES: &[&str] =
    &["python", "pypy", "node", "nodejs", "java", "ruby", "perl", "php", "php-fpm", "php-cgi", "bash", "dash", "sh"];

/// Shared libraries that are a runtime's own VM or interpreter.
const RUNTIME_LIBRARIES: &[&str] = &["libpython", "libjvm.so", "libnode.so", "libruby", "libperl.so", "libphp"];

/// Trees a runtime installs its native standard library into (the JDK's
/// libnio.so and libnet.so, Python's lib-dynload, Perl's XS modules).
const RUNTIME_TREES: &[&str] = &[
    "/usr/lib/jvm/",
    "/usr/lib/python",
    "/usr/local/lib/python",
    "/usr/lib/ruby/",
    "/usr/lib/php/",
    "/usr/lib/node_modules/",
];

/// Subdirectories of a search directory the loader also looks into: the
/// glibc-hwcaps variants (`x86-64-v3/`) and the legacy `tls`.
const LOADER_SUBDIRS: &[&str] = &["glibc-hwcaps", "tls"];

/// The directories the dynamic loader searches for libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LoaderPath {
    dirs: Vec<PathBuf>,
}

impl LoaderPath {
    /// This host's: the loader's defaults and what `/etc/ld.so.conf` adds,
    /// read once.
    pub(crate) fn system() -> &'static LoaderPath {
        static SYSTEM: OnceLock<LoaderPath> = OnceLock::new();
        SYSTEM.get_or_init(|| {
            let mut dirs = default_dirs(std::env::consts::ARCH);
            read_conf(Path::new("/etc/ld.so.conf"), &mut dirs, 0);
            LoaderPath::new(dirs)
        })
    }

    /// From directories as configured; each is also known by its other
    /// name on a merged-/usr system (`/lib/x` is `/usr/lib/x`), since
    /// /proc names a module by its real path.
    pub(crate) fn new(configured: Vec<PathBuf>) -> LoaderPath {
        let mut dirs = Vec::new();
        for dir in configured {
            let text = dir.to_string_lossy().trim_end_matches('/').to_string();
            let other = match text.strip_prefix("/usr") {
                Some(rest) if rest.starts_with("/lib") => rest.to_string(),
                _ if text.starts_with("/lib") => format!("/usr{text}"),
                _ => String::new(),
            };
            let real = std::fs::canonicalize(&dir).ok();
            for d in [Some(PathBuf::from(text)), (!other.is_empty()).then(|| PathBuf::from(other)), real]
                .into_iter()
                .flatten()
            {
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        LoaderPath { dirs }
    }

    /// True when the loader would find `module` on its search path: the
    /// module's directory is a search directory, or a hwcaps variant of one.
    pub(crate) fn holds(&self, module: &Path) -> bool {
        let Some(dir) = module.parent() else { return false };
        if self.dirs.iter().any(|d| d == dir) {
            return true;
        }
        // DIR/glibc-hwcaps/x86-64-v3/libfoo.so, DIR/tls/libfoo.so
        dir.ancestors().skip(1).take(2).any(|up| {
            let Ok(rest) = dir.strip_prefix(up) else { return false };
            rest.components().next().is_some_and(|c| LOADER_SUBDIRS.iter().any(|s| c.as_os_str() == *s))
                && self.dirs.iter().any(|d| d == up)
        })
    }
}

/// The loader's built-in directories (glibc's system dirs: the multiarch
/// ones on Debian and Ubuntu, lib64 elsewhere, then plain lib).
fn default_dirs(arch: &str) -> Vec<PathBuf> {
    let triplet = format!("{arch}-linux-gnu");
    [format!("/lib/{triplet}"), format!("/usr/lib/{triplet}"), "/lib64".into(), "/usr/lib64".into()]
        .into_iter()
        .chain(["/lib".to_string(), "/usr/lib".to_string(), "/usr/local/lib".to_string()])
        .map(PathBuf::from)
        .collect()
}

/// Adds the directories `conf` names, following its `include` globs (a
/// `*` in the file name only, which is what distributions write).
fn read_conf(conf: &Path, dirs: &mut Vec<PathBuf>, depth: u32) {
    let Ok(text) = std::fs::read_to_string(conf) else { return };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(pattern) = line.strip_prefix("include").map(str::trim) {
            if depth < 4 {
                for file in glob_files(pattern, conf.parent().unwrap_or(Path::new("/"))) {
                    read_conf(&file, dirs, depth + 1);
                }
            }
        } else if line.starts_with('/') {
            // A line may list several directories, and `hwcap` lines are
            // obsolete.
            dirs.extend(line.split([' ', '\t', ':', ',', '=']).filter(|d| d.starts_with('/')).map(PathBuf::from));
        }
    }
}

/// The files `pattern` names: `dir/*.conf` style, relative to `base`.
fn glob_files(pattern: &str, base: &Path) -> Vec<PathBuf> {
    let pattern = if pattern.starts_with('/') { PathBuf::from(pattern) } else { base.join(pattern) };
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![pattern.clone()];
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// True for a language runtime's executable or library, or a module of a
/// runtime's own tree.
pub(crate) fn is_runtime(module: &Path) -> bool {
    let Some(name) = module.file_name().and_then(|n| n.to_str()) else { return false };
    let text = module.to_string_lossy();
    RUNTIME_EXECUTABLES
        .iter()
        .any(|r| name.strip_prefix(r).is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.')))
        || RUNTIME_LIBRARIES.iter().any(|l| name.starts_with(l))
        || RUNTIME_TREES.iter().any(|t| text.starts_with(t))
}

/// True when `module` (a path as /proc names it, or a special name such as
/// `[vdso]`) is not the program's own code.
pub(crate) fn is_system(module: &str, loader: &LoaderPath) -> bool {
    if module.starts_with('[') {
        return true;
    }
    let path = Path::new(module);
    loader.holds(path) || is_runtime(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> LoaderPath {
        let mut dirs = default_dirs("x86_64");
        dirs.push("/usr/lib/x86_64-linux-gnu/libfakeroot".into());
        LoaderPath::new(dirs)
    }

    #[test]
    fn libraries_on_the_search_path_are_the_system() {
        let l = debian();
        for m in [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1",
            "/usr/lib/x86_64-linux-gnu/libfakeroot/libfakeroot-sysv.so",
            "/usr/local/lib/libjemalloc.so.2",
            "[vdso]",
        ] {
            assert!(is_system(m, &l), "{m}");
        }
    }

    #[test]
    fn installed_programs_are_the_program_wherever_they_sit() {
        let l = debian();
        for m in [
            "/usr/lib/postgresql/15/bin/postgres",
            "/usr/lib/postgresql/15/lib/plpgsql.so",
            "/usr/lib/nginx/modules/ngx_http_echo_module.so",
            "/usr/lib/leaktrace-test/bin/leaky",
            "/usr/sbin/nginx",
            "/usr/bin/redis-server",
            "/opt/app/bin/app",
            "/tmp/leaky",
            "/usr/lib/x86_64-linux-gnu/some/deeper/plugin.so",
        ] {
            assert!(!is_system(m, &l), "{m}");
        }
    }

    #[test]
    fn language_runtimes_are_never_the_program() {
        let l = debian();
        for m in [
            "/usr/bin/python3.11",
            "/usr/bin/python3",
            "/usr/bin/node",
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
            "/usr/lib/jvm/java-17-openjdk-amd64/lib/libnio.so",
            "/usr/lib/python3.11/lib-dynload/_socket.cpython-311-x86_64-linux-gnu.so",
            "/opt/python/lib/libpython3.12.so.1.0",
            "/usr/bin/bash",
            "/usr/bin/dash",
            "/usr/sbin/php-fpm8.2",
            "/usr/bin/perl5.36.0",
        ] {
            assert!(is_system(m, &l), "{m}");
        }
        // A program whose name only starts like a runtime's is the program.
        for m in ["/usr/bin/nodeexporter", "/usr/local/bin/javac-helper", "/usr/bin/shred", "/usr/bin/php-app"] {
            assert!(!is_system(m, &l), "{m}");
        }
    }

    #[test]
    fn ld_so_conf_and_its_includes_are_read() {
        let dir = std::env::temp_dir().join(format!("leaktrace-ldconf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ld.so.conf.d")).expect("dir");
        std::fs::write(dir.join("ld.so.conf"), "include ld.so.conf.d/*.conf\n/opt/legacy/lib # old\n").expect("conf");
        std::fs::write(dir.join("ld.so.conf.d/a.conf"), "# multiarch\n/opt/vendor/lib\n").expect("a");
        std::fs::write(dir.join("ld.so.conf.d/b.txt"), "/not/included\n").expect("b");
        let mut dirs = Vec::new();
        read_conf(&dir.join("ld.so.conf"), &mut dirs, 0);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(dirs, [PathBuf::from("/opt/vendor/lib"), PathBuf::from("/opt/legacy/lib")]);
        let l = LoaderPath::new(dirs);
        assert!(l.holds(Path::new("/opt/vendor/lib/libv.so")));
        assert!(!l.holds(Path::new("/opt/vendor/bin/v")));
    }
}
