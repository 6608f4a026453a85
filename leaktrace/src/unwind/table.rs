//! Builds a module's unwinding table from its `.eh_frame` CFI, in the compact
//! form the eBPF unwinder searches (`leaktrace_common::unwind::UnwindRow`).

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, EhFrame, LittleEndian, Register, RegisterRule, UnwindContext, UnwindSection,
};
use leaktrace_common::unwind::{UnwindRow, CFA_RBP, END, NO_INFO, RBP_SAVED};
use object::{Object, ObjectSection};

use crate::elf::Layout;
use thiserror::Error;

const RBP: Register = Register(6);
const RSP: Register = Register(7);
const RA: Register = Register(16);

#[derive(Debug, Error)]
pub(crate) enum TableError {
    #[error("not an ELF file: {0}")]
    NotElf(String),
    #[error("not an x86_64 module")]
    WrongArch,
    #[error("malformed .eh_frame: {0}")]
    EhFrame(gimli::Error),
    #[error("code above 4 GiB from the module's base")]
    TooLarge,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ModuleTable {
    /// Where the module's code lands; row pcs are relative to `layout.base`.
    pub layout: Layout,
    /// Sorted by pc. Empty when the module has no `.eh_frame` (Go binaries).
    pub rows: Vec<UnwindRow>,
}

impl ModuleTable {
    /// The value the unwinder subtracts from an address in a mapping that
    /// starts at `start` with file offset `file_offset` to get a row pc.
    pub(crate) fn bias(&self, start: u64, file_offset: u64) -> Option<u64> {
        let vaddr = self.layout.vaddr_of(file_offset)?;
        Some(start.wrapping_sub(vaddr).wrapping_add(self.layout.base))
    }
}

pub(crate) fn build(data: &[u8]) -> Result<ModuleTable, TableError> {
    let file = object::File::parse(data).map_err(|e| TableError::NotElf(e.to_string()))?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(TableError::WrongArch);
    }
    let layout = Layout::of(&file);
    let base = layout.base;
    let mut table = ModuleTable { layout, rows: Vec::new() };
    let Some(section) = file.section_by_name(".eh_frame") else {
        return Ok(table);
    };
    let data = section.data().map_err(|e| TableError::NotElf(e.to_string()))?;
    let eh_frame = EhFrame::new(data, LittleEndian);
    let mut bases = BaseAddresses::default().set_eh_frame(section.address());
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    if let Some(got) = file.section_by_name(".got") {
        bases = bases.set_got(got.address());
    }

    let mut rows: Vec<(UnwindRow, bool)> = Vec::new();
    let mut ctx = Box::new(UnwindContext::new());
    let mut entries = eh_frame.entries(&bases);
    let rel = |addr: u64| -> Result<u32, TableError> {
        u32::try_from(addr.wrapping_sub(base)).map_err(|_| TableError::TooLarge)
    };
    while let Some(entry) = entries.next().map_err(TableError::EhFrame)? {
        let CieOrFde::Fde(partial) = entry else { continue };
        // A broken FDE loses its function's rows, not the module's.
        let Ok(fde) = partial.parse(|_, bases, offset| eh_frame.cie_from_offset(bases, offset)) else {
            continue;
        };
        let Ok(mut fde_rows) = fde.rows(&eh_frame, &bases, &mut ctx) else { continue };
        while let Ok(Some(row)) = fde_rows.next_row() {
            rows.push((convert(rel(row.start_address())?, row.cfa(), row.register(RBP), row.register(RA)), false));
        }
        // Past the function's end there is no information until the next FDE.
        let end = fde.initial_address().wrapping_add(fde.len());
        rows.push((UnwindRow { pc: rel(end)?, kind: NO_INFO, ..Default::default() }, true));
    }
    // At equal pcs a function's first row wins over the previous one's end marker.
    rows.sort_by_key(|(row, gap)| (row.pc, !gap));
    let mut out: Vec<UnwindRow> = Vec::with_capacity(rows.len());
    for (row, _) in rows {
        match out.last_mut() {
            Some(last) if last.pc == row.pc => *last = row,
            Some(last) if same_rule(last, &row) => {}
            _ => out.push(row),
        }
    }
    table.rows = out;
    Ok(table)
}

fn same_rule(a: &UnwindRow, b: &UnwindRow) -> bool {
    (a.kind, a.cfa_offset, a.rbp_offset) == (b.kind, b.cfa_offset, b.rbp_offset)
}

/// One CFI row in the unwinder's terms; rules it cannot follow become NO_INFO.
fn convert(
    pc: u32,
    cfa: &CfaRule<usize>,
    rbp: Option<RegisterRule<usize>>,
    ra: Option<RegisterRule<usize>>,
) -> UnwindRow {
    let no_info = UnwindRow { pc, kind: NO_INFO, ..Default::default() };
    match ra {
        Some(RegisterRule::Undefined) => return UnwindRow { pc, kind: END, ..Default::default() },
        None | Some(RegisterRule::Offset(-8)) => {}
        Some(_) => return no_info,
    }
    let (mut kind, cfa_offset) = match cfa {
        CfaRule::RegisterAndOffset { register, offset } if *register == RSP || *register == RBP => {
            let Ok(offset) = i32::try_from(*offset) else { return no_info };
            (if *register == RBP { CFA_RBP } else { 0 }, offset)
        }
        // CFA expressions only occur in PLT stubs and signal trampolines.
        _ => return no_info,
    };
    let rbp_offset = match rbp {
        None | Some(RegisterRule::SameValue) | Some(RegisterRule::Undefined) => 0,
        Some(RegisterRule::Offset(o)) => {
            let Ok(o) = i16::try_from(o) else { return no_info };
            kind |= RBP_SAVED;
            o
        }
        Some(_) => return no_info,
    };
    UnwindRow { pc, cfa_offset, rbp_offset, kind, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrace_common::unwind::find_row;

    const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

    #[test]
    fn glibc_has_a_table_with_an_outermost_frame() {
        let data = std::fs::read(LIBC).expect("glibc");
        let table = build(&data).expect("table");
        assert!(table.rows.len() > 10_000, "{} rows", table.rows.len());
        assert!(table.rows.windows(2).all(|w| w[0].pc < w[1].pc), "sorted, no duplicate pcs");
        assert!(table.rows.iter().any(|r| r.kind & END != 0), "thread starts end the stack");
        assert!(table.rows.iter().any(|r| r.kind & RBP_SAVED != 0));
        assert_eq!(table.layout.base, 0);
        // The first instruction of a function: CFA = rsp + 8 (just the return address).
        let entry = table.rows.iter().filter(|r| r.kind == 0 && r.cfa_offset == 8).count();
        assert!(entry > 1000, "{entry}");
    }

    #[test]
    fn a_module_without_eh_frame_has_no_rows() {
        // A relocatable object file stands in for a Go binary here: ELF,
        // x86_64, and nothing to unwind with.
        let empty = object::write::Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let bytes = empty.write().expect("write");
        let table = build(&bytes).expect("table");
        assert!(table.rows.is_empty());
    }

    #[test]
    fn other_files_are_refused() {
        assert!(matches!(build(b"#!/bin/sh\n"), Err(TableError::NotElf(_))));
    }

    #[test]
    fn rows_are_found_by_address() {
        let data = std::fs::read(LIBC).expect("glibc");
        let table = build(&data).expect("table");
        let i = find_row(&table.rows, table.rows[100].pc + 1).expect("row");
        assert_eq!(i, 100);
    }
}
