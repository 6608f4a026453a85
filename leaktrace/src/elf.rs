//! The parts of an ELF file's layout leaktrace needs: where its loadable
//! segments land in memory, and its GNU build id.

use object::{Object, ObjectSegment};

/// A loadable segment: where file bytes land in the module's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub executable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Lowest loaded virtual address, page aligned.
    pub base: u64,
    pub segments: Vec<Segment>,
}

impl Layout {
    pub(crate) fn of(file: &object::File<'_>) -> Layout {
        let segments: Vec<Segment> = file
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                let executable =
                    matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
                Segment { offset, vaddr: s.address(), filesz, executable }
            })
            .collect();
        let base = segments.iter().map(|s| s.vaddr).min().unwrap_or(0) & !0xfff;
        Layout { base, segments }
    }

    /// The virtual address of the byte at `file_offset` in executable code.
    /// A segment that starts mid-page shares that page with the one before
    /// it (lld does this); the executable one is the mapped one.
    pub(crate) fn vaddr_of(&self, file_offset: u64) -> Option<u64> {
        let holds = |s: &&Segment| (s.offset & !0xfff) <= file_offset && file_offset < s.offset + s.filesz;
        self.segments
            .iter()
            .filter(holds)
            .max_by_key(|s| s.executable)
            .map(|s| s.vaddr.wrapping_add(file_offset).wrapping_sub(s.offset))
    }
}

/// The GNU build id, as lower-case hex.
pub(crate) fn build_id(file: &object::File<'_>) -> Option<String> {
    let id = file.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_segment_sharing_a_page_is_the_mapped_one() {
        // As lld lays out Rust binaries: R at 0, R+X from mid-page.
        let layout = Layout {
            base: 0,
            segments: vec![
                Segment { offset: 0, vaddr: 0, filesz: 0x156848, executable: false },
                Segment { offset: 0x156850, vaddr: 0x157850, filesz: 0x2ebee0, executable: true },
            ],
        };
        assert_eq!(layout.vaddr_of(0x156000), Some(0x157000));
        assert_eq!(layout.vaddr_of(0x156900), Some(0x157900));
        assert_eq!(layout.vaddr_of(0x9999999), None);
    }

    #[test]
    fn glibc_has_a_build_id_and_its_text_is_identity_mapped() {
        let data = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").expect("glibc");
        let file = object::File::parse(&*data).expect("elf");
        assert_eq!(build_id(&file).map(|id| id.len()), Some(40));
        let layout = Layout::of(&file);
        assert_eq!(layout.base, 0);
        let text = layout.segments.iter().find(|s| s.executable).expect("text");
        assert_eq!(layout.vaddr_of(text.offset), Some(text.vaddr));
    }
}
