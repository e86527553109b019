//! `-m statistic` (`libxt_statistic.c`, kernel `xt_statistic.c`): random sampling and every nth
//! packet, in the kernel's units (a 31-bit probability, `every` as `n - 1`).

use super::registry::{Located, MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, Fail, VResult};

const MODE: u8 = 0;
const PROBABILITY: u8 = 1;
const EVERY: u8 = 2;
const PACKET: u8 = 3;

pub(super) const STATISTIC: MatchExt = MatchExt {
    name: "statistic",
    family: None,
    opts: &[
        ("mode", MODE, 1, false),
        ("probability", PROBABILITY, 1, true),
        ("every", EVERY, 1, true),
        ("packet", PACKET, 1, false),
    ],
    exclusive: &[],
    new: || {
        Match::Statistic(StatisticMatch {
            mode: None,
            probability: None,
            every: None,
            packet: None,
            negated: false,
        })
    },
    apply,
    required: Some("--mode"),
    proto: None,
    check: Some(check),
};

/// `lround(p * 2^31)` of a probability in `[0, 1]`.
pub(crate) fn probability(s: &str) -> VResult<u32> {
    let p: f64 = s
        .parse()
        .ok()
        .filter(|p: &f64| (0.0..=1.0).contains(p))
        .map_or_else(
            || {
                fail(format!(
                    "bad probability `{s}`: expected a number from 0 to 1"
                ))
            },
            Ok,
        )?;
    Ok((p * f64::from(0x8000_0000u32)).round() as u32)
}

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Statistic(st) = m else {
        return fail("option not valid here");
    };
    match a.id {
        MODE => {
            st.mode = Some(match a.value {
                "random" => StatisticMode::Random,
                "nth" => StatisticMode::Nth,
                _ => return fail(format!("bad mode `{}`: expected random or nth", a.value)),
            })
        }
        PROBABILITY => st.probability = Some(probability(a.value)?),
        EVERY => {
            let n = values::number(a.value, u64::from(u32::MAX), "--every")? as u32;
            if n == 0 {
                return fail("--every must be at least 1");
            }
            st.every = Some(n - 1);
        }
        _ => st.packet = Some(values::number(a.value, u64::from(u32::MAX), "--packet")? as u32),
    }
    if a.neg {
        st.negated = true;
    }
    Ok(())
}

fn located(word: &'static str, msg: &str) -> Result<(), Located> {
    Err((
        word,
        Fail {
            msg: msg.into(),
            hint: None,
        },
    ))
}

fn check(m: &Match) -> Result<(), Located> {
    let Match::Statistic(st) = m else {
        return Ok(());
    };
    let nth = st.every.is_some() || st.packet.is_some();
    if st.probability.is_some() && nth {
        return located(
            "--probability",
            "--probability cannot be used together with --every/--packet",
        );
    }
    if st.every.is_some() != st.packet.is_some() {
        let w = if st.every.is_some() {
            "--every"
        } else {
            "--packet"
        };
        return located(w, "--every and --packet must be given together");
    }
    match st.mode {
        None => located("statistic", "option --mode must be specified"),
        Some(StatisticMode::Random) if st.probability.is_none() => located(
            "statistic",
            "--probability must be specified when using random mode",
        ),
        Some(StatisticMode::Nth) if !nth => located(
            "statistic",
            "--every and --packet must be specified when using nth mode",
        ),
        _ if st.packet > st.every => located("--packet", "the --packet p must be 0 <= p <= n-1"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::probability;
    use crate::{parse_restore, Family};

    fn ok(rule: &str) -> bool {
        let text = format!("*filter\n-A FORWARD {rule}\nCOMMIT\n");
        parse_restore("t", &text, Family::Ipv4).is_ok()
    }

    #[test]
    fn kernel_units() {
        assert_eq!(probability("0.5").unwrap(), 0x4000_0000);
        assert_eq!(probability("1").unwrap(), 0x8000_0000);
        assert_eq!(probability("0.3333").unwrap(), 715_756_300);
        assert!(probability("1.5").is_err());
        assert!(probability("-0.1").is_err());
    }

    #[test]
    fn what_the_tool_refuses() {
        assert!(ok("-m statistic --mode nth --every 3 --packet 2"));
        assert!(ok("-m statistic --probability 0.1 --mode random"));
        assert!(!ok("-m statistic --mode nth --every 3"));
        assert!(!ok("-m statistic --mode nth --packet 0"));
        for bad in [
            "-m statistic --mode nth --every 3 --packet 3",
            "-m statistic --mode random",
            "-m statistic --mode nth --every 0 --packet 0",
            "-m statistic --probability 0.5",
            "-m statistic --mode random --probability 0.5 --every 2 --packet 0",
            "-m statistic --mode other",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}
