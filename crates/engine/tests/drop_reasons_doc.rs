//! `docs/drop-reasons.md` is generated from [`DropReason`]: this test fails
//! when the file and the enum disagree (a reason added, renamed or
//! reworded without the docs), and
//! `PODWIRE_BLESS=1 cargo test -p podwire --test drop_reasons_doc`
//! rewrites the file from the enum.

use std::path::Path;

use podwire::pipeline::DropReason;

fn render() -> String {
    let mut out = String::from(
        "# Drop reasons\n\
         \n\
         <!-- Generated from `podwire::pipeline::DropReason` by\n\
         `PODWIRE_BLESS=1 cargo test -p podwire --test drop_reasons_doc`; edit the enum, not this file. -->\n\
         \n\
         Every packet podwire drops is counted under exactly one of these reasons, in this order in\n\
         `podwire show stats` and as the `reason` label of `podwire_drops_total` in the metrics.\n\
         \n\
         | reason | meaning |\n\
         |---|---|\n",
    );
    for r in DropReason::ALL {
        out.push_str(&format!("| `{}` | {} |\n", r.name(), r.description()));
    }
    out
}

#[test]
fn docs_list_every_drop_reason_as_the_enum_says() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/drop-reasons.md");
    let want = render();
    if std::env::var_os("PODWIRE_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        have == want,
        "{} is not what DropReason says; run PODWIRE_BLESS=1 cargo test -p podwire --test drop_reasons_doc\n--- expected ---\n{want}",
        path.display()
    );
    // Every name is unique and round-trips.
    for r in DropReason::ALL {
        assert_eq!(DropReason::from_name(r.name()), Some(*r));
    }
}
