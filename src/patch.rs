//! The JSONPatch from one document to another, written straight to bytes.
//!
//! The same operations, in the same order and bytes, as `serde_json::to_vec(&json_patch::diff(a,
//! b))` (the tests hold it to that), without building the `Patch` first: every added or replaced
//! value is serialized from `b` where it lies instead of being cloned into an operation, and no
//! pointer is allocated per operation. The webhook answers every Pod with one of these.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Map, Value};

/// Where [`pod_diff`] appends the containers it keeps out of the `Value`.
const CONTAINERS: &str = "/spec/containers";

/// The RFC 6902 patch that turns `from` into `to`, as a JSON array; `None` when they are equal.
/// For JSON without floating-point numbers, as a Pod's is.
fn diff(from: &Value, to: &Value) -> Option<Vec<u8>> {
    let mut out = Writer::new(&[]);
    out.value(from, to);
    out.finish()
}

/// [`diff`] from a Pod's JSON to the Pod `to`: the same bytes as `diff(from, &to_value(&to))`,
/// without a `Value` of the containers `to` has beyond `from`'s. Injection adds most of its
/// bytes there, and the webhook answers every Pod with this.
pub fn pod_diff(from: &Value, mut to: Pod) -> serde_json::Result<Option<Vec<u8>>> {
    let kept = from
        .pointer(CONTAINERS)
        .and_then(Value::as_array)
        .map(Vec::len);
    let appended = match (kept, to.spec.as_mut()) {
        (Some(n), Some(spec)) if spec.containers.len() > n => spec.containers.split_off(n),
        _ => Vec::new(),
    };
    let to_json = serde_json::to_value(&to)?;
    let mut out = Writer::new(&appended);
    out.value(from, &to_json);
    if out.appended.is_empty() {
        return Ok(out.finish());
    }
    // Not reached (both sides hold the array): diff the whole Pods instead.
    if let Some(spec) = to.spec.as_mut() {
        spec.containers.extend(appended);
    }
    Ok(diff(from, &serde_json::to_value(&to)?))
}

pub(crate) struct Writer<'a> {
    bytes: Vec<u8>,
    /// The JSON pointer of the value being compared, escaped.
    path: String,
    ops: usize,
    /// Elements to add at the end of the array at [`CONTAINERS`]; emptied once added.
    appended: &'a [Container],
}

impl<'a> Writer<'a> {
    pub(crate) fn new(appended: &'a [Container]) -> Writer<'a> {
        Writer {
            bytes: Vec::new(),
            path: String::new(),
            ops: 0,
            appended,
        }
    }

    pub(crate) fn finish(mut self) -> Option<Vec<u8>> {
        if self.ops == 0 {
            return None;
        }
        self.bytes.push(b']');
        Some(self.bytes)
    }

    pub(crate) fn value(&mut self, from: &Value, to: &Value) {
        match (from, to) {
            (Value::Object(f), Value::Object(t)) => self.object(f, t),
            (Value::Array(f), Value::Array(t)) => self.array(f, t),
            _ if from == to => {}
            _ => self.op("replace", Some(to)),
        }
    }

    fn object(&mut self, from: &Map<String, Value>, to: &Map<String, Value>) {
        for (key, t) in to {
            let len = self.push_key(key);
            match from.get(key) {
                Some(f) => self.value(f, t),
                None => self.op("add", Some(t)),
            }
            self.path.truncate(len);
        }
        for key in from.keys().filter(|k| !to.contains_key(*k)) {
            let len = self.push_key(key);
            self.op("remove", None::<&Value>);
            self.path.truncate(len);
        }
    }

    /// Element by element; extra elements of `from` are removed one after another at the
    /// index where `to` ends.
    fn array(&mut self, from: &[Value], to: &[Value]) {
        for i in 0..from.len().max(to.len()) {
            let len = self.path.len();
            self.path.push('/');
            match (from.get(i), to.get(i)) {
                (Some(f), Some(t)) => {
                    self.push_index(i);
                    self.value(f, t);
                }
                (None, Some(t)) => {
                    self.push_index(i);
                    self.op("add", Some(t));
                }
                _ => {
                    self.push_index(to.len());
                    self.op("remove", None::<&Value>);
                }
            }
            self.path.truncate(len);
        }
        if !self.appended.is_empty() && self.path == CONTAINERS {
            let appended = std::mem::take(&mut self.appended);
            for (i, element) in appended.iter().enumerate() {
                let len = self.path.len();
                self.path.push('/');
                self.push_index(to.len() + i);
                self.op("add", Some(element));
                self.path.truncate(len);
            }
        }
    }

    /// Operations written elsewhere by a writer like this one (`count` of them, joined by
    /// commas, no brackets), as if written here.
    pub(crate) fn splice(&mut self, ops: &[u8], count: usize) {
        if count == 0 {
            return;
        }
        self.bytes
            .extend_from_slice(if self.ops == 0 { b"[" } else { b"," });
        self.bytes.extend_from_slice(ops);
        self.ops += count;
    }

    /// The operations written so far, without brackets, and how many.
    pub(crate) fn into_ops(self) -> (Vec<u8>, usize) {
        let mut bytes = self.bytes;
        if !bytes.is_empty() {
            bytes.remove(0);
        }
        (bytes, self.ops)
    }

    /// Room for `additional` more bytes: a caller that knows the patch's size grows it once.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.bytes.reserve(additional);
    }

    /// The path the next operations are under.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.path.truncate(len);
    }

    /// What `value` writes for two objects of strings at key `key`: `from` absent is an add of
    /// the whole of `to`.
    pub(crate) fn string_map<'s>(
        &mut self,
        key: &str,
        from: Option<
            &std::collections::BTreeMap<std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>>,
        >,
        to: &std::collections::BTreeMap<&'s str, &'s str>,
    ) {
        let len = self.push_key(key);
        let Some(from) = from else {
            self.op("add", Some(to));
            self.path.truncate(len);
            return;
        };
        for (k, v) in to {
            let at = self.push_key(k);
            match from.get(*k) {
                Some(f) if f == v => {}
                Some(_) => self.op("replace", Some(v)),
                None => self.op("add", Some(v)),
            }
            self.path.truncate(at);
        }
        for k in from.keys().filter(|k| !to.contains_key(k.as_ref())) {
            let at = self.push_key(k);
            self.op("remove", None::<&Value>);
            self.path.truncate(at);
        }
        self.path.truncate(len);
    }

    fn push_index(&mut self, i: usize) {
        use std::fmt::Write as _;
        let _ = write!(self.path, "{i}");
    }

    /// Append `/key`, escaped as RFC 6901 says; returns the length to truncate back to.
    pub(crate) fn push_key(&mut self, key: &str) -> usize {
        let len = self.path.len();
        self.path.push('/');
        // Escaped in place: most keys of a Pod's maps hold a '/' (kuscia.secretflow/...).
        let mut rest = key;
        while let Some(at) = rest.find(['~', '/']) {
            self.path.push_str(&rest[..at]);
            self.path.push_str(if rest.as_bytes()[at] == b'~' {
                "~0"
            } else {
                "~1"
            });
            rest = &rest[at + 1..];
        }
        self.path.push_str(rest);
        len
    }

    pub(crate) fn op(&mut self, op: &str, value: Option<&impl serde::Serialize>) {
        self.bytes
            .extend_from_slice(if self.ops == 0 { b"[" } else { b"," });
        self.ops += 1;
        self.bytes.extend_from_slice(b"{\"op\":\"");
        self.bytes.extend_from_slice(op.as_bytes());
        self.bytes.extend_from_slice(b"\",\"path\":");
        // Neither a pointer, a Value nor a Container can fail to serialize into a Vec. sonic-rs
        // writes what serde_json writes (the tests hold it to that), escaping strings with SIMD.
        let _ = sonic_rs::to_writer(&mut self.bytes, &self.path);
        if let Some(value) = value {
            self.bytes.extend_from_slice(b",\"value\":");
            let _ = sonic_rs::to_writer(&mut self.bytes, value);
        }
        self.bytes.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// What json-patch itself makes of the pair.
    fn reference(from: &Value, to: &Value) -> Option<Vec<u8>> {
        let patch = json_patch::diff(from, to);
        (!patch.0.is_empty()).then(|| serde_json::to_vec(&patch).unwrap())
    }

    fn same_as_json_patch(from: &Value, to: &Value) {
        let ours = diff(from, to);
        assert_eq!(
            ours.as_deref().map(String::from_utf8_lossy),
            reference(from, to).as_deref().map(String::from_utf8_lossy),
            "{from} -> {to}"
        );
        if let Some(bytes) = ours {
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            let mut doc = from.clone();
            json_patch::patch(&mut doc, &patch).unwrap();
            assert_eq!(&doc, to);
        }
    }

    #[test]
    fn equal_documents_need_no_patch() {
        let doc = json!({"a": [1, {"b": null}], "c": "d"});
        assert_eq!(diff(&doc, &doc), None);
    }

    #[test]
    fn adds_replaces_and_removes_with_escaped_paths() {
        same_as_json_patch(
            &json!({"metadata": {"labels": {"a/b": "1", "x~y": "2"}}, "n": 1, "gone": true}),
            &json!({"metadata": {"labels": {"a/b": "3", "new/one~": "4"}}, "n": "1"}),
        );
        same_as_json_patch(&json!([1, 2, 3, 4]), &json!([1, 5]));
        same_as_json_patch(&json!([]), &json!([{"name": "c", "env": []}]));
        same_as_json_patch(&json!({"a": [1]}), &json!({"a": {"0": 1}}));
        same_as_json_patch(&json!(1), &json!("x\"\n"));
    }

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    /// `pod_diff` writes what `diff` writes for the Pods as JSON.
    fn same_as_diff(from: &Value, to: Pod) {
        let reference = diff(from, &serde_json::to_value(&to).unwrap());
        let ours = pod_diff(from, to).unwrap();
        assert_eq!(
            ours.as_deref().map(String::from_utf8_lossy),
            reference.as_deref().map(String::from_utf8_lossy),
        );
    }

    #[test]
    fn pod_diff_appends_containers_as_diff_would() {
        let user = json!({"name": "app", "image": "a", "env": [{"name": "X", "value": "1"}]});
        let injected = json!({"name": "app", "image": "b", "env": [{"name": "X", "value": "1"}]});
        let side = json!({"name": "side", "image": "s", "ports": [{"containerPort": 80}]});
        let from = json!({"metadata": {"name": "p"}, "spec": {"containers": [user]}});
        for containers in [
            vec![injected.clone(), side.clone(), side.clone()],
            vec![injected.clone()],
            vec![user.clone()],
            vec![],
        ] {
            let to = json!({"metadata": {"name": "p", "labels": {"a": "b"}},
                "spec": {"containers": containers, "volumes": [{"name": "v"}]}});
            same_as_diff(&from, pod(to));
        }
        // No containers array, or no spec, to append to: the whole Pods are compared.
        let to = pod(json!({"spec": {"containers": [side.clone(), side.clone()]}}));
        same_as_diff(&json!({"metadata": {"name": "p"}}), to.clone());
        same_as_diff(
            &json!({"spec": {"containers": {"not": "an array"}}}),
            to.clone(),
        );
        let two = json!({"spec": {"containers": [user.clone(), user]}});
        same_as_diff(&two, to);
        let same = pod(two);
        let from = serde_json::to_value(&same).unwrap();
        assert_eq!(pod_diff(&from, same).unwrap(), None);
    }

    /// JSON as a Pod's: no floating-point numbers, which no field of a Pod holds (sonic-rs
    /// would print some of them differently from serde_json).
    fn document() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // What needs escaping in JSON, and what does not.
            "[a-c/~\"\\\\\n\t\r\u{8}\u{c}\u{1}\u{1f}\u{7f}é😀<>&]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-c/~]{0,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_same_bytes_as_json_patch(from in document(), to in document()) {
            same_as_json_patch(&from, &to);
        }
    }
}
