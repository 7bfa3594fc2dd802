//! The command-line front ends: `replay`, `bridge`, `gen`. Each subcommand lives in its own
//! module; what they share (the policy options) is here.

pub mod bridge;
pub mod gen;
pub mod replay;

use crate::engine::{
    DropReason, EngineConfig, EvictClass, FailMode, ForwardReason, Limits, Stats,
    DEFAULT_MAX_CONNECTIONS,
};
use crate::smtp::{BannerMask, PolicyConfig, Profile};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

/// A failed command: a one-line message for the user and the process exit code.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong, one line, no trailing newline.
    pub message: String,
    /// Process exit code (non-zero).
    pub code: u8,
}

impl CliError {
    /// An error with exit code 1.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The frames `stats` forwarded unchanged, by reason, every reason in index order.
pub(crate) fn forwarded_by_reason(stats: &Stats) -> Vec<(&'static str, u64)> {
    ForwardReason::ALL
        .iter()
        .map(|r| {
            (
                r.name(),
                stats.forwarded.get(*r as usize).copied().unwrap_or(0),
            )
        })
        .collect()
}

/// The frames `stats` dropped, by reason, every reason in index order.
pub(crate) fn dropped_by_reason(stats: &Stats) -> Vec<(&'static str, u64)> {
    DropReason::ALL
        .iter()
        .map(|r| {
            (
                r.name(),
                stats.dropped.get(*r as usize).copied().unwrap_or(0),
            )
        })
        .collect()
}

/// Counters as `name{between}count`, joined with `sep` (`EHLO=1 MAIL=2`, `EHLO 1, MAIL 2`),
/// leaving out zero counts when `skip_zero`; `None` when nothing is left. Used by the
/// summaries of `replay` and `bridge`, which print the same counters in their own layout.
pub(crate) fn join_counts<K: Display>(
    counts: impl IntoIterator<Item = (K, u64)>,
    between: &str,
    sep: &str,
    skip_zero: bool,
) -> Option<String> {
    let parts: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| !skip_zero || *n > 0)
        .map(|(k, n)| format!("{k}{between}{n}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(sep))
}

/// Profile names for clap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileArg {
    /// `no fixup protocol smtp 25`: nothing is filtered.
    Off,
    /// PIX 4.0/4.1 `mailhost`: blocked lines removed and answered `250 OK` by the filter.
    Pix40,
    /// PIX 4.2-4.4: blocked lines X-ed, banner text turned to `*`.
    Pix44,
    /// PIX 5.1+/6.x: blocked lines X-ed, banner all `*` but `2`, `0` and reply codes.
    Pix51,
    /// ASA `inspect esmtp` default map: ESMTP verbs allowed, EHLO reply masked, limits.
    Asa,
    /// Secure and ESMTP-friendly: unsafe extensions removed from EHLO, smuggling-proof DATA.
    Strict,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Off => Profile::Off,
            ProfileArg::Pix40 => Profile::Pix40,
            ProfileArg::Pix44 => Profile::Pix44,
            ProfileArg::Pix51 => Profile::Pix51,
            ProfileArg::Asa => Profile::Asa,
            ProfileArg::Strict => Profile::Strict,
        }
    }
}

/// `--banner-mask` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BannerMaskArg {
    /// Keep each line's reply code and the separator after it.
    Standard,
    /// Mask the separator too, as in the Microsoft KB 320027 example.
    Kb,
}

/// `--fail-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailModeArg {
    /// Forward what cannot be judged untouched.
    Open,
    /// Drop what cannot be judged (reset its connection).
    Closed,
}

/// The policy options shared by `replay` and `bridge`.
#[derive(Clone, Debug, clap::Args)]
pub struct PolicyArgs {
    /// Which Mailguard to be (see the README's profiles table).
    #[arg(long, value_enum, default_value = "strict")]
    pub profile: ProfileArg,
    /// TCP server ports treated as SMTP, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25",
        value_name = "PORT,..."
    )]
    pub ports: Vec<u16>,
    /// Banner masking: `kb` also masks the separator after the reply code.
    #[arg(long, value_enum, default_value = "standard")]
    pub banner_mask: BannerMaskArg,
    /// A verb `strict` allows besides its own list (repeatable), e.g. X-LINK2STATE, XEXCH50.
    #[arg(long = "allow-verb", value_name = "VERB")]
    pub allow_verbs: Vec<String>,
    /// What to do with traffic the engine cannot judge (unparseable, over a limit).
    #[arg(long, value_enum, default_value = "open")]
    pub fail_mode: FailModeArg,
}

impl PolicyArgs {
    /// The policy these options describe.
    pub fn policy(&self) -> PolicyConfig {
        PolicyConfig {
            profile: self.profile.into(),
            banner_mask: match self.banner_mask {
                BannerMaskArg::Standard => BannerMask::Standard,
                BannerMaskArg::Kb => BannerMask::Kb,
            },
            allow_verbs: self
                .allow_verbs
                .iter()
                .map(|v| v.to_ascii_uppercase())
                .collect(),
        }
    }

    /// An engine configuration with these options.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            ports: self.ports.clone(),
            policy: Arc::new(self.policy()),
            fail_mode: match self.fail_mode {
                FailModeArg::Open => FailMode::Open,
                FailModeArg::Closed => FailMode::Closed,
            },
            ..EngineConfig::default()
        }
    }
}

/// The resource bounds shared by `replay` and `bridge`. Figures are for the whole process:
/// the bridge divides them among its workers.
#[derive(Clone, Debug, clap::Args)]
pub struct LimitArgs {
    /// Connections tracked at once. A new connection beyond it evicts one: the closed one
    /// idle longest, else the oldest embryonic one (no byte carried yet), else the session
    /// idle longest, never a session active in the last second; when none may go, its SYN
    /// is dropped (`over-limit`). Evicted connections' later data is dropped (`untracked`).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Memory ceiling for connection state (flow table, records, index entries, buffers),
    /// with K, M or G (powers of 1024). New connections are admitted up to 7/8 of it,
    /// evicting as for --max-connections; a connection growing past it evicts others, or
    /// is reset by the filter (`memory-ceiling`) when none may go. The summary's `memory:`
    /// line gives the peak.
    #[arg(long, default_value = "1G", value_parser = parse_size, value_name = "BYTES")]
    pub max_memory: usize,
    /// Out-of-order bytes held per connection and direction (K, M, G); a connection that
    /// needs more is reset by the filter (`out-of-order-limit`).
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "BYTES")]
    pub max_ooo_bytes: usize,
    /// Output bytes kept per connection and direction until the receiver acknowledges them
    /// (K, M, G); past it the connection is reset by the filter (`output-log-limit`).
    #[arg(long, default_value = "8M", value_parser = parse_size, value_name = "BYTES")]
    pub max_log_bytes: usize,
    /// Seconds an established connection may be idle before it is forgotten.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub idle_timeout: u64,
    /// Seconds a connection with only its SYN seen is kept.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub embryonic_timeout: u64,
}

impl LimitArgs {
    /// The limits of one engine out of `workers`: the process-wide figures divided among
    /// them, rounded up (connections are spread over workers by a hash of their addresses).
    pub fn limits(&self, workers: usize) -> Limits {
        let workers = workers.max(1);
        Limits {
            max_connections: self.max_connections.div_ceil(workers),
            max_memory: self.max_memory.div_ceil(workers),
            max_ooo_bytes: self.max_ooo_bytes,
            max_log_bytes: self.max_log_bytes,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            embryonic_timeout: Duration::from_secs(self.embryonic_timeout),
            ..Limits::default()
        }
    }
}

/// `1048576`, `512K`, `64M`, `2G` (also `2GiB`, `2gb`): a size in bytes, suffixes in powers
/// of 1024.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let shift = match &lower[digits.len()..] {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512M, 2G)"))?;
    n.checked_mul(1u64 << shift)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The connections `stats` evicted, by class, every class in index order.
pub(crate) fn evicted_by_class(stats: &Stats) -> Vec<(&'static str, u64)> {
    EvictClass::ALL
        .iter()
        .map(|c| {
            (
                c.name(),
                stats.evicted.get(*c as usize).copied().unwrap_or(0),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes_and_reject_garbage() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1K").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn limit_args_divide_process_figures_among_workers() {
        let a = LimitArgs {
            max_connections: 10,
            max_memory: 1000,
            max_ooo_bytes: 7,
            max_log_bytes: 9,
            idle_timeout: 5,
            embryonic_timeout: 3,
        };
        let l = a.limits(3);
        assert_eq!((l.max_connections, l.max_memory), (4, 334));
        assert_eq!((l.max_ooo_bytes, l.max_log_bytes), (7, 9));
        assert_eq!(l.idle_timeout, Duration::from_secs(5));
        assert_eq!(l.embryonic_timeout, Duration::from_secs(3));
        assert_eq!(a.limits(0).max_connections, 10);
    }

    #[test]
    fn join_counts_lays_counters_out_and_skips_zeros_on_request() {
        let c = [("EHLO", 1), ("VRFY", 0), ("MAIL", 2)];
        assert_eq!(
            join_counts(c, "=", " ", true).as_deref(),
            Some("EHLO=1 MAIL=2")
        );
        assert_eq!(
            join_counts(c, " ", ", ", false).as_deref(),
            Some("EHLO 1, VRFY 0, MAIL 2")
        );
        assert_eq!(join_counts([("VRFY", 0)], "=", " ", true), None);
        assert_eq!(
            join_counts(Vec::<(&str, u64)>::new(), "=", " ", false),
            None
        );
    }

    #[test]
    fn reason_counters_cover_every_reason_in_index_order() {
        let mut stats = Stats::default();
        stats.forwarded[ForwardReason::OtherPort as usize] = 3;
        stats.dropped[DropReason::BadChecksum as usize] = 2;
        let fwd = forwarded_by_reason(&stats);
        assert_eq!(fwd.len(), ForwardReason::ALL.len());
        assert_eq!(fwd[ForwardReason::OtherPort as usize], ("other-port", 3));
        assert_eq!(fwd.iter().map(|(_, n)| n).sum::<u64>(), 3);
        let drop = dropped_by_reason(&stats);
        assert_eq!(drop.len(), DropReason::ALL.len());
        assert_eq!(drop[DropReason::BadChecksum as usize], ("bad-checksum", 2));
    }
}
