//! Serde forms of configuration values: durations written as whole milliseconds or seconds,
//! as the `SMOOCH_*_MS` and `SMOOCH_*_S` variables give them.

/// A `Duration` as whole milliseconds (`#[serde(with = "domain::config::millis")]`).
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes the duration as milliseconds.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads milliseconds, such as `5000`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// A `Duration` as whole seconds (`#[serde(with = "domain::config::seconds")]`).
pub mod seconds {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes the duration as seconds.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    /// Reads seconds, such as `300`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// Text given as any scalar: an environment variable such as `SMOOCH_REDIS_PREFIX=12345`
/// reaches serde as a number, and must still be read as the text `12345`
/// (`#[serde(deserialize_with = "domain::config::text")]`, or [`text_opt`] for options).
pub fn text<'de, D: serde::Deserializer<'de>, T: From<String>>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_any(TextVisitor).map(T::from)
}

/// [`text`] for an optional value.
pub fn text_opt<'de, D: serde::Deserializer<'de>, T: From<String>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    deserializer
        .deserialize_option(OptionalText)
        .map(|v| v.map(T::from))
}

struct TextVisitor;

impl serde::de::Visitor<'_> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("text")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_char<E: serde::de::Error>(self, v: char) -> Result<String, E> {
        Ok(v.to_string())
    }
}

struct OptionalText;

impl<'de> serde::de::Visitor<'de> for OptionalText {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("text or nothing")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(TextVisitor).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Both {
        #[serde(with = "super::millis")]
        ms: Duration,
        #[serde(with = "super::seconds")]
        s: Duration,
    }

    #[test]
    fn durations_round_trip_as_whole_units() {
        let both: Both = serde_json::from_str(r#"{"ms": 1500, "s": 300}"#).unwrap();
        assert_eq!(
            both,
            Both {
                ms: Duration::from_millis(1500),
                s: Duration::from_secs(300)
            }
        );
        assert_eq!(
            serde_json::to_string(&both).unwrap(),
            r#"{"ms":1500,"s":300}"#
        );
        assert!(serde_json::from_str::<Both>(r#"{"ms": -1, "s": 1}"#).is_err());
    }

    #[derive(serde::Deserialize)]
    struct Texts {
        #[serde(deserialize_with = "super::text")]
        a: String,
        #[serde(deserialize_with = "super::text_opt", default)]
        b: Option<String>,
    }

    #[test]
    fn text_is_read_from_any_scalar() {
        let t: Texts = serde_json::from_str(r#"{"a": 12345, "b": true}"#).unwrap();
        assert_eq!((t.a.as_str(), t.b.as_deref()), ("12345", Some("true")));
        let t: Texts = serde_json::from_str(r#"{"a": "x", "b": null}"#).unwrap();
        assert_eq!((t.a.as_str(), t.b), ("x", None));
        assert!(serde_json::from_str::<Texts>(r#"{"a": [1]}"#).is_err());
    }
}
