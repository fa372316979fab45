//! The guest side of `wattlet:stream`: `From` impls between the types `wit_bindgen::generate!`
//! makes and the native ones (field for field).

use crate::component::wit;
use crate::{Config, Event, HouseForecast, Outlier, Outputs, PlugForecast, Property, Stats};

impl From<wit::Property> for Property {
    fn from(property: wit::Property) -> Self {
        match property {
            wit::Property::Work => Property::Work,
            wit::Property::Load => Property::Load,
        }
    }
}

impl From<wit::Event> for Event {
    fn from(e: wit::Event) -> Self {
        Event {
            id: e.id,
            ts: e.ts,
            value_mw: e.value_mw,
            property: e.property.into(),
            plug: e.plug,
            household: e.household,
            house: e.house,
        }
    }
}

impl From<wit::Config> for Config {
    fn from(config: wit::Config) -> Self {
        Config {
            lateness: config.lateness,
            queries: crate::Queries {
                forecast: config.forecast,
                outliers: config.outliers,
            },
            per_house: config.per_house,
        }
    }
}

impl From<HouseForecast> for wit::HouseForecast {
    fn from(f: HouseForecast) -> Self {
        wit::HouseForecast {
            at: f.at,
            ts: f.ts,
            house: f.house,
            slice_len: f.slice_len,
            load_w: f.load_w,
        }
    }
}

impl From<PlugForecast> for wit::PlugForecast {
    fn from(f: PlugForecast) -> Self {
        wit::PlugForecast {
            at: f.at,
            ts: f.ts,
            house: f.house,
            household: f.household,
            plug: f.plug,
            slice_len: f.slice_len,
            load_w: f.load_w,
        }
    }
}

impl From<Outlier> for wit::Outlier {
    fn from(o: Outlier) -> Self {
        wit::Outlier {
            ts: o.ts,
            window: o.window,
            house: o.house,
            above: o.above,
            plugs: o.plugs,
            percent: o.percent,
        }
    }
}

impl From<Outputs> for wit::Outputs {
    fn from(out: Outputs) -> Self {
        wit::Outputs {
            houses: out.houses.into_iter().map(Into::into).collect(),
            plugs: out.plugs.into_iter().map(Into::into).collect(),
            outliers: out.outliers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Stats> for wit::Stats {
    fn from(s: Stats) -> Self {
        wit::Stats {
            events: s.events,
            late: s.late,
            outputs: s.outputs,
        }
    }
}
