//! `cargo run -p rules --example rules_print -- FILE [ipv4|ipv6] [save|list]`: what
//! `fwd rules print` does, for trying the parser by hand.
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: rules_print FILE [ipv4|ipv6] [save|list]");
        std::process::exit(2);
    };
    let family = if args.get(2).map(String::as_str) == Some("ipv6") {
        rules::Family::Ipv6
    } else {
        rules::Family::Ipv4
    };
    let format = if args.get(3).map(String::as_str) == Some("list") {
        rules::PrintFormat::List
    } else {
        rules::PrintFormat::Save
    };
    let t = std::time::Instant::now();
    match rules::cli_print(Path::new(path), family, format) {
        Ok(text) => {
            print!("{text}");
            eprintln!("parsed and printed in {:?}", t.elapsed());
        }
        Err(d) => {
            eprint!("{d}");
            std::process::exit(1);
        }
    }
}
