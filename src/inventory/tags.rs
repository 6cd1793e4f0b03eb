//! The tags of an instance, volume, image or snapshot, stored compactly.
//!
//! An inventory of 100,000 snapshots holds 100,000 tag sets of five or so
//! tags each. As a map of strings each took about 1 KB (a tree node, and
//! two allocations per tag), and the inventory did not fit the memory a
//! plan may use. Here a tag set is one allocation: its pairs, sorted by
//! key, joined by NUL characters (which EC2 does not allow in tags). Tag
//! sets are read far more often than changed; a change rebuilds it.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::collections::BTreeMap;
use std::fmt;

const SEP: char = '\0';

/// Key-value tags, sorted by key; at most one value per key.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags {
    /// `key NUL value NUL key NUL value…`; empty for no tags.
    text: Box<str>,
}

impl Tags {
    pub fn new() -> Tags {
        Tags::default()
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut parts = (!self.text.is_empty())
            .then(|| self.text.split(SEP))
            .into_iter()
            .flatten();
        std::iter::from_fn(move || Some((parts.next()?, parts.next().unwrap_or(""))))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Sets `key` to `value`, replacing any value it had.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let mut map = self.to_map();
        map.insert(key.into(), value.into());
        *self = Tags::from_map(&map);
    }

    /// Sets every tag of `other`, replacing the values of keys both hold.
    pub fn extend_from(&mut self, other: &Tags) {
        *self = self.iter().chain(other.iter()).collect();
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let mut map = self.to_map();
        let old = map.remove(key);
        *self = Tags::from_map(&map);
        old
    }

    fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Tags from a map, or an error naming the first tag that holds a NUL
    /// character.
    fn try_from_map(map: &BTreeMap<String, String>) -> Result<Tags, String> {
        if let Some((k, _)) = map.iter().find(|(k, v)| k.contains(SEP) || v.contains(SEP)) {
            return Err(format!(
                "tag {k:?} holds a NUL character, which EC2 tags cannot"
            ));
        }
        Ok(Tags::from_map(map))
    }

    fn from_map(map: &BTreeMap<String, String>) -> Tags {
        let mut text = String::with_capacity(map.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
        for (i, (k, v)) in map.iter().enumerate() {
            if i > 0 {
                text.push(SEP);
            }
            text.push_str(k);
            text.push(SEP);
            text.push_str(v);
        }
        Tags {
            text: text.into_boxed_str(),
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    /// Later pairs win over earlier ones with the same key, as in a map.
    /// A NUL character in a tag (EC2 allows none) becomes U+FFFD.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Tags {
        let clean = |s: String| {
            if s.contains(SEP) {
                s.replace(SEP, "\u{FFFD}")
            } else {
                s
            }
        };
        let map: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (clean(k.into()), clean(v.into())))
            .collect();
        Tags::from_map(&map)
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for Tags {
    fn from(pairs: [(K, V); N]) -> Tags {
        pairs.into_iter().collect()
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tags, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        Tags::try_from_map(&map).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_behave_as_a_sorted_map() {
        let mut t: Tags = [("b", "2"), ("a", "1"), ("c", ""), ("a", "one")].into();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            [("a", "one"), ("b", "2"), ("c", "")]
        );
        assert_eq!(t.get("a"), Some("one"));
        assert_eq!(t.get("c"), Some(""));
        assert_eq!(t.get("d"), None);
        assert_eq!(t.len(), 3);
        t.insert("aa", "x");
        t.insert("b", "two");
        assert_eq!(t.remove("c"), Some(String::new()));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"a":"one","aa":"x","b":"two"}"#
        );
        let empty_key: Tags = [("", "")].into();
        assert_eq!(empty_key.len(), 1);
        assert!(!empty_key.is_empty());
        assert!(Tags::new().is_empty());
        assert_eq!(Tags::new().iter().count(), 0);
        let read: Tags = serde_json::from_str(r#"{"z":"1","y":"2"}"#).unwrap();
        assert_eq!(read.keys().collect::<Vec<_>>(), ["y", "z"]);
        let e = serde_json::from_str::<Tags>(r#"{"k":"a\u0000b"}"#).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
    }
}
