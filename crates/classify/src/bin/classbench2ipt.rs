//! `classbench2ipt RULES [CHAIN [TARGET]]`: print a ClassBench rule set as an iptables-restore
//! file (see `classify::classbench::to_iptables_restore` for what is converted and how).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: classbench2ipt RULES [CHAIN [TARGET]]");
        return ExitCode::from(2);
    };
    let chain = args.get(1).map_or("FORWARD", |s| s.as_str());
    let target = args.get(2).map_or("ACCEPT", |s| s.as_str());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rules = match classify::classbench::parse_rules(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{path}:{e}");
            return ExitCode::FAILURE;
        }
    };
    match classify::classbench::to_iptables_restore(&rules, chain, target) {
        Ok((out, _)) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::FAILURE
        }
    }
}
