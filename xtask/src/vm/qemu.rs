//! Booting a kernel under qemu with KVM: the host's root shared read-only
//! over 9p, the results directory read-write, the serial console streamed
//! to the terminal and to a log, and the whole run bounded in time.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::initramfs::{RESULTS_TAG, ROOT_TAG};

pub(super) const QEMU: &str = "qemu-system-x86_64";

/// How qemu runs the guest's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Accel {
    /// Hardware virtualization (kvm_intel or kvm_amd).
    Kvm,
    /// qemu's own translator, one host thread per virtual CPU.
    Tcg,
}

impl Accel {
    /// KVM when the host has hardware virtualization behind /dev/kvm. A
    /// /dev/kvm served by kvm_pvm alone (PVM, as in some cloud sandboxes)
    /// runs only guest kernels built for PVM: a distribution kernel under it
    /// crawls through the early boot and then stops on an instruction PVM
    /// cannot emulate (cmpxchg16b, xrstor), so such hosts use TCG.
    pub(crate) fn detect() -> (Accel, &'static str) {
        let hardware = ["kvm_intel", "kvm_amd"].iter().any(|m| Path::new("/sys/module").join(m).exists());
        let usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        match (hardware, usable) {
            (true, true) => (Accel::Kvm, "KVM"),
            (_, true) => {
                (Accel::Tcg, "TCG: /dev/kvm here is not hardware virtualization (kvm_pvm runs only PVM guest kernels)")
            }
            (_, false) => (Accel::Tcg, "TCG: /dev/kvm cannot be opened"),
        }
    }
}

pub(super) struct QemuPlan<'a> {
    pub accel: Accel,
    pub image: &'a Path,
    pub initramfs: &'a Path,
    pub results: &'a Path,
    pub cpus: u32,
    pub memory_mib: u32,
}

/// The kernel's command line: the console on the serial port, our init,
/// and a panic (init failing) ends the VM at once instead of hanging.
pub(super) const CMDLINE: &str = "console=ttyS0 quiet panic=-1 rdinit=/init random.trust_cpu=on";

pub(super) fn args(plan: &QemuPlan) -> Vec<String> {
    let mut args: Vec<String> =
        ["-nodefaults", "-no-user-config", "-no-reboot", "-display", "none", "-monitor", "none", "-serial", "stdio"]
            .map(String::from)
            .to_vec();
    let (accel, cpu) = match plan.accel {
        Accel::Kvm => ("kvm", "host"),
        // Every CPU feature qemu can emulate; one host thread per vCPU.
        Accel::Tcg => ("tcg,thread=multi,tb-size=512", "max"),
    };
    args.extend(["-machine".into(), "pc".into(), "-accel".into(), accel.into(), "-cpu".into(), cpu.into()]);
    args.extend(["-smp".into(), plan.cpus.to_string(), "-m".into(), plan.memory_mib.to_string()]);
    args.extend(["-kernel".into(), plan.image.display().to_string()]);
    args.extend(["-initrd".into(), plan.initramfs.display().to_string()]);
    args.extend(["-append".into(), CMDLINE.into()]);
    // multidevs=remap: the host's root spans several filesystems, whose
    // inode numbers would otherwise collide in the guest.
    args.extend([
        "-fsdev".into(),
        format!("local,id={ROOT_TAG},path=/,security_model=none,readonly=on,multidevs=remap"),
        "-device".into(),
        format!("virtio-9p-pci,fsdev={ROOT_TAG},mount_tag={ROOT_TAG}"),
        "-fsdev".into(),
        format!("local,id={RESULTS_TAG},path={},security_model=none", plan.results.display()),
        "-device".into(),
        format!("virtio-9p-pci,fsdev={RESULTS_TAG},mount_tag={RESULTS_TAG}"),
    ]);
    args
}

pub(super) struct Boot {
    pub elapsed: Duration,
    pub timed_out: bool,
    /// The console's last lines.
    pub tail: Vec<String>,
}

const TAIL_LINES: usize = 60;

/// Boots and waits until the guest powers off or `timeout` passes (then
/// the VM is killed). Console lines go to the terminal, prefixed with
/// `label`, and to `console_log`.
pub(super) fn boot(plan: &QemuPlan, label: &str, console_log: &Path, timeout: Duration) -> Result<Boot> {
    let start = Instant::now();
    let mut child = Command::new(QEMU)
        .args(args(plan))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    let log = Arc::new(Mutex::new(
        std::fs::File::create(console_log).with_context(|| format!("cannot create {}", console_log.display()))?,
    ));
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut readers = Vec::new();
    let streams: [Box<dyn std::io::Read + Send>; 2] =
        [Box::new(child.stdout.take().context("qemu stdout")?), Box::new(child.stderr.take().context("qemu stderr")?)];
    for stream in streams {
        let (log, tail, label) = (log.clone(), tail.clone(), label.to_string());
        readers.push(std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::new();
            while reader.read_until(b'\n', &mut raw).unwrap_or(0) > 0 {
                let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).replace('\r', "");
                raw.clear();
                println!("[{label}] {line}");
                if let Ok(mut log) = log.lock() {
                    let _ = writeln!(log, "{line}");
                }
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        }));
    }
    let mut timed_out = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            // Our own qemu; the guest's state dies with it.
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for reader in readers {
        let _ = reader.join();
    }
    let tail = tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
    Ok(Boot { elapsed: start.elapsed(), timed_out, tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        let args = args(&QemuPlan {
            accel: Accel::Kvm,
            image: Path::new("/w/target/vm/kernels/debian-6.1/root/boot/vmlinuz-6.1.0-56-amd64"),
            initramfs: Path::new("/w/target/vm/run/debian-6.1/initramfs.cpio"),
            results: Path::new("/w/target/vm/run/debian-6.1/results"),
            cpus: 2,
            memory_mib: 4096,
        });
        let joined = args.join(" ");
        assert!(joined.contains("-machine pc -accel kvm -cpu host"));
        assert!(joined.contains("-smp 2 -m 4096"));
        assert!(joined.contains("-kernel /w/target/vm/kernels/debian-6.1/root/boot/vmlinuz-6.1.0-56-amd64"));
        assert!(joined.contains("-initrd /w/target/vm/run/debian-6.1/initramfs.cpio"));
        assert!(joined.contains("-append console=ttyS0 quiet panic=-1 rdinit=/init"));
        assert!(joined.contains("local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"));
        assert!(joined.contains("local,id=results,path=/w/target/vm/run/debian-6.1/results,security_model=none "));
        assert!(joined.contains("virtio-9p-pci,fsdev=results,mount_tag=results"));
        assert!(joined.contains("-no-reboot"), "a reboot or panic ends qemu");
        assert_eq!(args.iter().filter(|a| *a == "-append").count(), 1);
    }
}
