//! Tier 1: the embedded object defines every program and map the controller expects.
use object::{Object, ObjectSection, ObjectSymbol};

#[test]
fn object_has_programs_and_maps() {
    let obj = object::File::parse(lb_userspace::dataplane::object::OBJECT).expect("valid ELF");
    let symbols: Vec<String> = obj
        .symbols()
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect();
    assert!(
        symbols.iter().any(|s| s == lb_common::prog_names::LB_XDP),
        "program lb_xdp missing"
    );
    assert!(
        !symbols.iter().any(|s| s == lb_common::prog_names::LB_BENCH),
        "the bench harness must not ship in the balancer object"
    );
    let maps_section = obj.section_by_name("maps").expect("maps section").index();
    let maps: Vec<String> = obj
        .symbols()
        .filter(|s| s.section_index() == Some(maps_section))
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect();
    for map in lb_common::map_names::ALL {
        assert!(
            maps.iter().any(|m| m == map),
            "map {map} missing (have {maps:?})"
        );
    }
    assert!(
        symbols.iter().any(|s| s == lb_common::HASH_SEED_GLOBAL),
        "global {} missing",
        lb_common::HASH_SEED_GLOBAL
    );
}

#[test]
fn object_is_bpf_with_btf() {
    let obj = object::File::parse(lb_userspace::dataplane::object::OBJECT).expect("valid ELF");
    assert_eq!(obj.architecture(), object::Architecture::Bpf);
    assert!(
        obj.section_by_name(".BTF").is_some(),
        "no BTF: maps need it for pinning"
    );
    assert!(obj.section_by_name("xdp").is_some(), "no xdp section");
}

#[test]
fn bench_object_has_harness_floor_and_maps() {
    let obj = object::File::parse(lb_lab::BENCH_OBJECT).expect("valid ELF");
    let names: Vec<String> = obj
        .symbols()
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect();
    use lb_common::{bench, prog_names};
    for want in [
        prog_names::LB_BENCH,
        prog_names::LB_PASS,
        bench::FRAME_MAP,
        bench::TARGET_MAP,
        bench::SEQ_MAP,
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing");
    }
}
