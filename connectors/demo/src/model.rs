//! The simulated contact centre: queues with their sizes and handle times, the daily and
//! weekly volume curves, and the deterministic noise every number is drawn from.

use crate::DemoSettings;
use acdlink_connector_api::{time::SourceTimeZone, Channel, ConnectorError, UtcMillis};
use jiff::civil::Weekday;

/// One simulated queue.
pub(crate) struct QueueModel {
    pub id: String,
    pub name: String,
    pub channel: Channel,
    /// Relative size: multiplies the settings' daily volume.
    pub size: f64,
    /// Average handle time of a handled contact, seconds.
    pub handle_secs: f64,
    /// Share of offered contacts that are handled at normal load.
    pub handled_rate: f64,
    /// Extra abandoned contacts per interval (the settings' `corrections`).
    pub correction: u32,
}

pub(crate) struct Model {
    pub settings: DemoSettings,
    pub zone: SourceTimeZone,
    pub queues: Vec<QueueModel>,
    /// Sum of the daily curve over the minutes of a day, so a day's volume is `daily_volume`.
    curve_per_day: f64,
}

const QUEUE_NAMES: [&str; 10] = [
    "Sales",
    "Service",
    "Billing",
    "Technical Support",
    "Kündigung",
    "Returns",
    "Premium",
    "Claims",
    "Onboarding",
    "Déménagement",
];

impl Model {
    pub fn new(settings: DemoSettings, zone: SourceTimeZone) -> Model {
        let seed = settings.seed;
        let queues = (0..settings.queues)
            .map(|index| {
                let channel = match index % 8 {
                    6 => Channel::CHATS,
                    7 => Channel::EMAILS,
                    _ => Channel::CALLS,
                };
                let base_handle_secs = match channel {
                    Channel::CHATS => 520.0,
                    Channel::EMAILS => 410.0,
                    _ => 265.0,
                };
                let name_index = index as usize % QUEUE_NAMES.len();
                let round = index as usize / QUEUE_NAMES.len();
                let name = if round == 0 {
                    QUEUE_NAMES[name_index].to_string()
                } else {
                    format!("{} {}", QUEUE_NAMES[name_index], round + 1)
                };
                let id = format!("Q{:04}", index + 1);
                QueueModel {
                    correction: settings.corrections.get(&id).copied().unwrap_or(0),
                    id,
                    name,
                    channel,
                    size: 0.3 + 1.4 * unit(mix(&[seed, 1, u64::from(index)])),
                    handle_secs: base_handle_secs
                        * (0.8 + 0.4 * unit(mix(&[seed, 2, u64::from(index)]))),
                    handled_rate: 0.88 + 0.1 * unit(mix(&[seed, 3, u64::from(index)])),
                }
            })
            .collect();
        let curve_per_day = (0..1440)
            .map(|minute| daily_curve(f64::from(minute) / 60.0))
            .sum();
        Model {
            settings,
            zone,
            queues,
            curve_per_day,
        }
    }

    /// Expected contacts offered per unit of queue size in the interval starting at
    /// `start`, from the local time of the interval's middle.
    pub fn interval_load(&self, start: UtcMillis) -> Result<f64, ConnectorError> {
        let minutes = f64::from(self.settings.interval_minutes);
        let middle =
            UtcMillis(start.0 + UtcMillis::minutes(i64::from(self.settings.interval_minutes)) / 2);
        let local = self.zone.to_local(middle)?;
        let hour = f64::from(local.hour())
            + f64::from(local.minute()) / 60.0
            + f64::from(local.second()) / 3600.0;
        Ok(f64::from(self.settings.daily_volume)
            * weekly_factor(local.weekday())
            * daily_curve(hour)
            * minutes
            / self.curve_per_day)
    }
}

/// Relative volume by local hour: a late-morning peak, an early-afternoon peak, an evening
/// shoulder, and a trickle at night.
fn daily_curve(hour: f64) -> f64 {
    let bump = |centre: f64, width: f64| (-0.5 * ((hour - centre) / width).powi(2)).exp();
    0.02 + bump(10.5, 1.8) + 0.85 * bump(14.5, 2.2) + 0.25 * bump(19.0, 1.5)
}

/// Relative volume by weekday: busy Monday, quiet weekend.
fn weekly_factor(weekday: Weekday) -> f64 {
    match weekday {
        Weekday::Monday => 1.15,
        Weekday::Tuesday => 1.05,
        Weekday::Wednesday => 1.0,
        Weekday::Thursday => 0.95,
        Weekday::Friday => 0.9,
        Weekday::Saturday => 0.35,
        Weekday::Sunday => 0.15,
    }
}

/// A well-mixed 64-bit hash of a few numbers (SplitMix64 steps): the source of every
/// "random" number, so that data depends only on the settings and the time.
pub(crate) fn mix(parts: &[u64]) -> u64 {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for part in parts {
        state = state
            .wrapping_add(*part)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        state = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        state = (state ^ (state >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state ^= state >> 31;
    }
    state
}

/// Another well-mixed hash from `base` and `salt`, in one mixing step: cheap enough to draw
/// several numbers per record from one `mix` of its key.
pub(crate) fn derive(base: u64, salt: u64) -> u64 {
    let mut state = base ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    state = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    state = (state ^ (state >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    state ^ (state >> 31)
}

/// Rounds a number >= 0 to the nearest whole number. `f64::round` is a libm call on
/// baseline x86-64, and this is on the hot path of every record.
pub(crate) fn round_whole(value: f64) -> f64 {
    ((value + 0.5) as u64) as f64
}

/// A number in `[0, 1)` from a hash.
pub(crate) fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// A number in `[-1, 1)` from a hash.
pub(crate) fn signed(hash: u64) -> f64 {
    2.0 * unit(hash) - 1.0
}
