fn main() {
    let arch = systole_arch::ArchConfig::preset("tiny").unwrap();
    let p = systole_emulator::randprog::random_program(&arch, 7, 60);
    for (i, x) in p.code.iter().enumerate() { println!("{i:3} {x}"); }
    let r = systole_emulator::run(&p, &arch, &[], &Default::default()).unwrap();
    println!("{}", r.stats.report());
}
