//! `docs/isa.md` embeds the generated ISA reference and assembler examples; these tests keep
//! them equal to the code. Regenerate the reference with
//! `SYSTOLE_BLESS=1 cargo test -p systole-arch docs`.

use std::path::PathBuf;
use systole_arch::asm;
use systole_arch::isa::{self, Insn, Unit};
use systole_arch::ArchConfig;

const BEGIN: &str = "<!-- BEGIN GENERATED: isa::markdown_reference -->";
const END: &str = "<!-- END GENERATED -->";
const REGENERATE: &str = "regenerate it with `SYSTOLE_BLESS=1 cargo test -p systole-arch docs`";

fn isa_md() -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/isa.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// Byte range of the generated section: from the line after BEGIN to the start of END's line.
fn generated_range(doc: &str) -> Result<std::ops::Range<usize>, String> {
    let line_start = |marker: &str, from: usize| {
        doc[from..]
            .match_indices(marker)
            .map(|(i, _)| from + i)
            .find(|&i| i == 0 || doc.as_bytes()[i - 1] == b'\n')
    };
    let begin =
        line_start(BEGIN, 0).ok_or_else(|| format!("has no line starting with `{BEGIN}`"))?;
    let start = doc[begin..]
        .find('\n')
        .map(|i| begin + i + 1)
        .ok_or_else(|| format!("ends right after `{BEGIN}`"))?;
    let end = line_start(END, start)
        .ok_or_else(|| format!("has no line starting with `{END}` after `{BEGIN}`"))?;
    Ok(start..end)
}

#[test]
fn docs_isa_reference_matches_the_code() {
    let (path, doc) = isa_md();
    let range = generated_range(&doc)
        .unwrap_or_else(|e| panic!("{}: {e}; add the two marker lines", path.display()));
    let want = isa::markdown_reference();
    let have = &doc[range.clone()];
    if have == want {
        return;
    }
    if std::env::var("SYSTOLE_BLESS").as_deref() == Ok("1") {
        let mut new = doc.clone();
        new.replace_range(range, &want);
        systole_arch::image::write_atomic(&path, new.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("{}: regenerated the ISA reference", path.display());
        return;
    }
    let first_line = doc[..range.start].matches('\n').count() + 1;
    let (n, h, w) = have
        .split('\n')
        .zip(want.split('\n'))
        .enumerate()
        .find(|(_, (h, w))| h != w)
        .map(|(i, (h, w))| (i, h, w))
        .unwrap_or_else(|| {
            let n = have.split('\n').count().min(want.split('\n').count());
            (n, "<end of section>", "<more lines>")
        });
    panic!(
        "{}:{}: the generated ISA reference differs from isa::markdown_reference() \
         (found `{h}`, expected `{w}`); {REGENERATE}",
        path.display(),
        first_line + n
    );
}

/// Every ```sysasm block in docs/isa.md, with the line its text starts on.
fn sysasm_blocks(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut cur {
            None if line.trim() == "```sysasm" => cur = Some((i + 2, String::new())),
            None => {}
            Some(_) if line.trim() == "```" => out.extend(cur.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    out
}

/// Queue a flag refers to, for an instruction on `unit`: (queue name, is it a pop?).
fn queue(unit: Unit, flag: usize) -> Option<(&'static str, bool)> {
    match (unit, flag) {
        (Unit::Load, 1) => Some(("compute->load", true)),
        (Unit::Load, 3) => Some(("load->compute", false)),
        (Unit::Compute, 0) => Some(("load->compute", true)),
        (Unit::Compute, 1) => Some(("store->compute", true)),
        (Unit::Compute, 2) => Some(("compute->load", false)),
        (Unit::Compute, 3) => Some(("compute->store", false)),
        (Unit::Store, 0) => Some(("compute->store", true)),
        (Unit::Store, 2) => Some(("store->compute", false)),
        _ => None,
    }
}

/// Runs the token protocol one instruction at a time in program order: every pop must find a
/// token, no queue may exceed `token_depth`, and every queue must end empty.
fn check_tokens(code: &[Insn], arch: &ArchConfig) -> Result<(), String> {
    let mut count = std::collections::BTreeMap::new();
    for (i, insn) in code.iter().enumerate() {
        let flags = insn.deps.flags();
        let mut pushes = Vec::new();
        for (f, on) in flags.iter().enumerate() {
            if !on {
                continue;
            }
            let (q, pop) = queue(insn.unit(), f).ok_or_else(|| {
                format!(
                    "insn {i} `{insn}`: {} is illegal on {}",
                    isa::Deps::NAMES[f],
                    insn.unit()
                )
            })?;
            if pop {
                let c = count.entry(q).or_insert(0u32);
                if *c == 0 {
                    return Err(format!("insn {i} `{insn}` pops the empty {q} queue"));
                }
                *c -= 1;
            } else {
                pushes.push(q);
            }
        }
        for q in pushes {
            let c = count.entry(q).or_insert(0u32);
            *c += 1;
            if *c > arch.controller.token_depth {
                return Err(format!("insn {i} `{insn}` overfills the {q} queue"));
            }
        }
    }
    match count.iter().find(|(_, &c)| c != 0) {
        Some((q, c)) => Err(format!("{c} tokens left in the {q} queue")),
        None => Ok(()),
    }
}

#[test]
fn docs_isa_examples_assemble_and_balance_their_tokens() {
    let (path, doc) = isa_md();
    let blocks = sysasm_blocks(&doc);
    assert!(
        !blocks.is_empty(),
        "{}: no ```sysasm examples",
        path.display()
    );
    for (line, text) in blocks {
        let p = asm::assemble(&text, "example")
            .unwrap_or_else(|e| panic!("{}:{}: {}", path.display(), line + e.line - 1, e.msg));
        let arch = p.arch().unwrap();
        check_tokens(&p.code, &arch)
            .unwrap_or_else(|e| panic!("{}: example at line {line}: {e}", path.display()));
        let loaded = systole_arch::Program::from_bytes(&p.to_bytes().unwrap()).unwrap();
        assert_eq!(asm::assemble(&asm::disassemble(&loaded), "rt").unwrap(), p);
    }
}

#[test]
fn docs_generated_range_finds_the_markers() {
    let doc = format!("intro\n{BEGIN}\nold\n{END}\nrest\n");
    let r = generated_range(&doc).unwrap();
    assert_eq!(&doc[r], "old\n");
    assert!(generated_range("no markers").is_err());
}
