//! How a mapping's protection and flags read in reports.

use leaktrace_common::mmap::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_HUGETLB, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, MAP_TYPE,
};

/// Flags the kernel ignores or that only tune a mapping, by name
/// (include/uapi/asm-generic/mman.h, x86_64).
const TUNING: [(u64, &str); 9] = [
    (0x0100, "MAP_GROWSDOWN"),
    (0x0800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x80000, "MAP_SYNC"),
];

/// `rw-`, `r-x`, `---`: as in /proc/PID/maps.
pub(crate) fn prot(prot: u32) -> String {
    let bit = |b: u32, c: char| if prot & b != 0 { c } else { '-' };
    [bit(1, 'r'), bit(2, 'w'), bit(4, 'x')].iter().collect()
}

/// `MAP_PRIVATE|MAP_ANONYMOUS`, the flags that say what a mapping is (others
/// are shown in hex).
pub(crate) fn flags(flags: u32) -> String {
    let flags = u64::from(flags);
    let mut names = vec![match flags & MAP_TYPE {
        MAP_SHARED => "MAP_SHARED".to_string(),
        MAP_PRIVATE => "MAP_PRIVATE".to_string(),
        MAP_SHARED_VALIDATE => "MAP_SHARED_VALIDATE".to_string(),
        other => format!("{other:#x}"),
    }];
    let mut rest = flags & !MAP_TYPE;
    for (bit, name) in [
        (MAP_ANONYMOUS, "MAP_ANONYMOUS"),
        (MAP_FIXED, "MAP_FIXED"),
        (MAP_FIXED_NOREPLACE, "MAP_FIXED_NOREPLACE"),
        (MAP_HUGETLB, "MAP_HUGETLB"),
    ]
    .into_iter()
    .chain(TUNING)
    {
        if rest & bit != 0 {
            names.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names.join("|")
}

/// 1.5 KiB, 12.0 MiB: binary units, one decimal.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(prot(3), "rw-");
        assert_eq!(prot(5), "r-x");
        assert_eq!(prot(0), "---");
        assert_eq!(flags(0x22), "MAP_PRIVATE|MAP_ANONYMOUS");
        assert_eq!(flags(0x12), "MAP_PRIVATE|MAP_FIXED");
        assert_eq!(flags(0x01 | 0x4000), "MAP_SHARED|MAP_NORESERVE");
        assert_eq!(flags(0x02 | 0x0800 | 0x400_0000), "MAP_PRIVATE|MAP_DENYWRITE|0x4000000");
    }

    #[test]
    fn human_bytes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
