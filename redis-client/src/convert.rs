//! Conversions: Rust values into command arguments ([`ToArgs`]), replies into Rust values
//! ([`FromValue`]).
//!
//! Arguments: strings, byte strings (`&[u8]`, `Vec<u8>`, [`Bytes`]), integers, floats, `bool`
//! (`1`/`0`), `Option` (nothing for `None`), slices, vectors, arrays and tuples of those (one
//! argument per element: `&["a", "b"]` is two keys, `&[("field", 1)]` a field and a value).
//! A byte string is always one argument.
//!
//! Replies: `String`, `Vec<u8>`, `Bytes`, integers (range-checked), floats (`inf` included),
//! `bool` (`1`/`0`, `OK`, RESP3 booleans), `Option` (nil is `None`), `Vec`, `HashSet`,
//! `BTreeSet`, `HashMap`, `BTreeMap` (from RESP3 maps and RESP2 flat arrays alike), tuples (from
//! arrays of exactly their length; `Vec<(K, V)>` also from maps and flat arrays), [`Value`]
//! itself, `()`, and `Result<T, ServerError>` for a reply that may be an error in its place (in a
//! pipeline). A mismatch is a [`TypeError`] naming the expected and the received type.
//!
//! ```
//! use redis_client::{FromValue, Value};
//!
//! let reply = Value::Array(vec![Value::BulkString("7".into()), Value::Null]);
//! let (n, missing): (i64, Option<String>) = FromValue::from_value(reply).unwrap();
//! assert_eq!((n, missing), (7, None));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

use bytes::Bytes;
use redis_conn::{Batch, Cmd, ServerError, Value};

use crate::{Error, Result, TypeError};

/// Where [`ToArgs`] values put their arguments: a [`Cmd`] being built, or the last command
/// queued in a pipeline's [`Batch`] (so that a pipeline's typed commands are encoded straight
/// into the buffer that is sent).
///
/// Sealed: implemented by this crate for [`Cmd`] and [`Batch`] only.
pub trait ArgSink: crate::commands::sealed::Sealed {
    /// Appends one argument, binary-safe.
    fn push_arg(&mut self, arg: impl AsRef<[u8]>);

    /// Appends an integer argument, formatted in decimal without allocating.
    fn push_int(&mut self, n: i64);
}

impl crate::commands::sealed::Sealed for Cmd {}

impl ArgSink for Cmd {
    #[inline]
    fn push_arg(&mut self, arg: impl AsRef<[u8]>) {
        Cmd::push_arg(self, arg);
    }

    #[inline]
    fn push_int(&mut self, n: i64) {
        Cmd::push_int(self, n);
    }
}

impl crate::commands::sealed::Sealed for Batch {}

/// Appends to the last command of the batch.
///
/// # Panics
/// When the batch is empty (see [`Batch::push_arg`]).
impl ArgSink for Batch {
    #[inline]
    fn push_arg(&mut self, arg: impl AsRef<[u8]>) {
        Batch::push_arg(self, arg);
    }

    #[inline]
    fn push_int(&mut self, n: i64) {
        Batch::push_int(self, n);
    }
}

/// A value that becomes zero or more command arguments.
///
/// Implement it for a type of your own to pass it to any command:
///
/// ```
/// use redis_client::{ArgSink, Cmd, ToArgs};
///
/// struct Point { x: i64, y: i64 }
///
/// impl ToArgs for Point {
///     fn push_to<S: ArgSink>(&self, out: &mut S) {
///         out.push_int(self.x);
///         out.push_int(self.y);
///     }
/// }
///
/// let mut cmd = Cmd::new("GEOADD");
/// Point { x: 2, y: 48 }.push_to(&mut cmd);
/// assert_eq!(cmd.arg_at(2), Some(&b"48"[..]));
/// ```
pub trait ToArgs {
    /// Appends this value's arguments to `out`.
    fn push_to<S: ArgSink>(&self, out: &mut S);

    /// Appends a slice of these values. Byte slices override it, so that `&[u8]` is one
    /// argument rather than one per byte.
    #[doc(hidden)]
    fn push_slice_to<S: ArgSink>(items: &[Self], cmd: &mut S)
    where
        Self: Sized,
    {
        for item in items {
            item.push_to(cmd);
        }
    }
}

impl<T: ToArgs + ?Sized> ToArgs for &T {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        (**self).push_to(cmd);
    }
}

impl ToArgs for str {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(self);
    }
}

impl ToArgs for String {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(self);
    }
}

impl ToArgs for Bytes {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(self);
    }
}

impl<T: ToArgs> ToArgs for [T] {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        T::push_slice_to(self, cmd);
    }
}

impl<T: ToArgs> ToArgs for Vec<T> {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        T::push_slice_to(self, cmd);
    }
}

impl<T: ToArgs, const N: usize> ToArgs for [T; N] {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        T::push_slice_to(self, cmd);
    }
}

impl<T: ToArgs> ToArgs for Option<T> {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        if let Some(v) = self {
            v.push_to(cmd);
        }
    }
}

/// No arguments (no keys for EVAL, say).
impl ToArgs for () {
    fn push_to<S: ArgSink>(&self, _cmd: &mut S) {}
}

impl ToArgs for u8 {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_int(i64::from(*self));
    }

    fn push_slice_to<S: ArgSink>(items: &[u8], cmd: &mut S) {
        cmd.push_arg(items);
    }
}

macro_rules! int_args {
    ($($t:ty),*) => {$(
        impl ToArgs for $t {
            fn push_to<S: ArgSink>(&self, cmd: &mut S) {
                match i64::try_from(*self) {
                    Ok(n) => cmd.push_int(n),
                    Err(_) => cmd.push_arg(self.to_string()),
                }
            }
        }
    )*};
}

int_args!(i8, i16, i32, i64, isize, u16, u32, u64, usize);

impl ToArgs for f64 {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(self.to_string());
    }
}

impl ToArgs for f32 {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(self.to_string());
    }
}

impl ToArgs for bool {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(if *self { "1" } else { "0" });
    }
}

macro_rules! tuple_args {
    ($($name:ident)+) => {
        impl<$($name: ToArgs),+> ToArgs for ($($name,)+) {
            #[allow(non_snake_case)]
            fn push_to<S: ArgSink>(&self, cmd: &mut S) {
                let ($($name,)+) = self;
                $($name.push_to(cmd);)+
            }
        }
    };
}

tuple_args!(A);
tuple_args!(A B);
tuple_args!(A B C);
tuple_args!(A B C D);

/// A Rust value made from a reply.
pub trait FromValue: Sized {
    /// Converts a reply. An error reply is [`Error::Server`]; a reply of another type a
    /// [`TypeError`].
    ///
    /// # Errors
    /// As above.
    fn from_value(value: Value) -> Result<Self>;

    /// Whether this type is a two-element tuple, which a list can also be made of from a map or a
    /// flat array of pairs (`HGETALL` into `Vec<(String, String)>` on RESP2 and RESP3 alike).
    #[doc(hidden)]
    const IS_PAIR: bool = false;

    /// A list of these from a reply. Bytes override it: `Vec<u8>` is made from a bulk string.
    #[doc(hidden)]
    fn from_value_list(value: Value) -> Result<Vec<Self>> {
        list_from_value(value)
    }
}

/// A short description of a reply's type, for error messages (never its content).
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Set(items) => format!("a set of {}", items.len()),
        Value::Map(pairs) => format!("a map of {}", pairs.len()),
        Value::Push(items) => format!("a push message of {}", items.len()),
        Value::Null => "nil".to_string(),
        Value::Error(_) => "an error reply".to_string(),
        Value::Integer(_) => "an integer".to_string(),
        other => format!("a {}", other.kind()),
    }
}

fn mismatch<T>(expected: &'static str, value: &Value) -> Result<T> {
    Err(TypeError::new(expected, describe(value)).into())
}

fn server(message: Bytes) -> Error {
    Error::Server(ServerError::new(message))
}

/// The value without RESP3 attributes. A loop, not a recursion, so that it inlines into every
/// conversion (it runs once or twice per element of every list reply).
#[inline(always)]
fn plain(mut value: Value) -> Value {
    loop {
        match value {
            Value::Attribute { value: inner, .. } => value = *inner,
            other => return other,
        }
    }
}

fn list_from_value<T: FromValue>(value: Value) -> Result<Vec<T>> {
    match plain(value) {
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            let flat_pairs = T::IS_PAIR
                && !items
                    .first()
                    .is_some_and(|v| matches!(v, Value::Array(_) | Value::Map(_)));
            if flat_pairs {
                if items.len() % 2 != 0 {
                    return Err(TypeError::new(
                        "a list of pairs",
                        format!("an array of {} (odd)", items.len()),
                    )
                    .into());
                }
                let mut out = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    out.push(T::from_value(Value::Array(vec![k, v]))?);
                }
                Ok(out)
            } else {
                // A plain loop: an iterator collected into a `Result` costs a few more moves
                // of each element, which a hundred-key MGET notices.
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(T::from_value(item)?);
                }
                Ok(out)
            }
        }
        Value::Map(pairs) => {
            if T::IS_PAIR {
                pairs
                    .into_iter()
                    .map(|(k, v)| T::from_value(Value::Array(vec![k, v])))
                    .collect()
            } else {
                let mut out = Vec::with_capacity(pairs.len() * 2);
                for (k, v) in pairs {
                    out.push(T::from_value(k)?);
                    out.push(T::from_value(v)?);
                }
                Ok(out)
            }
        }
        Value::Null => Ok(Vec::new()),
        Value::Error(e) => Err(server(e)),
        other => mismatch("a list", &other),
    }
}

/// Key-value pairs of a map, a flat array, or an array of pairs.
fn pairs_from_value<K: FromValue, V: FromValue>(value: Value) -> Result<Vec<(K, V)>> {
    match plain(value) {
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Ok((K::from_value(k)?, V::from_value(v)?)))
            .collect(),
        other => list_from_value::<(K, V)>(other),
    }
}

impl FromValue for Value {
    fn from_value(value: Value) -> Result<Self> {
        Ok(value)
    }
}

impl FromValue for () {
    fn from_value(value: Value) -> Result<Self> {
        match value {
            Value::Error(e) => Err(server(e)),
            _ => Ok(()),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: Value) -> Result<Self> {
        match plain(value) {
            Value::Boolean(b) => Ok(b),
            Value::Integer(n) => Ok(n != 0),
            Value::Null => Ok(false),
            Value::SimpleString(s) if s.eq_ignore_ascii_case(b"OK") => Ok(true),
            v @ (Value::BulkString(_) | Value::SimpleString(_)) => {
                match v.as_bytes().map(|b| &b[..]) {
                    Some(b"1" | b"true") => Ok(true),
                    Some(b"0" | b"false") => Ok(false),
                    _ => mismatch("a boolean", &v),
                }
            }
            Value::Error(e) => Err(server(e)),
            other => mismatch("a boolean", &other),
        }
    }
}

/// The text of a string-like reply, for parsing numbers.
fn text(value: &Value) -> Option<&str> {
    value.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

/// An integer of type `T` from an integer reply, a numeric string, a whole double or a boolean.
fn integer<T>(value: Value, what: &'static str) -> Result<T>
where
    T: TryFrom<i64> + TryFrom<i128> + From<bool> + std::str::FromStr,
{
    let out_of_range = || -> Error { TypeError::new(what, "an integer out of its range").into() };
    match plain(value) {
        Value::Integer(n) => T::try_from(n).map_err(|_| out_of_range()),
        Value::Boolean(b) => Ok(T::from(b)),
        Value::Double(d) if d.fract() == 0.0 && d.is_finite() => {
            T::try_from(d as i128).map_err(|_| out_of_range())
        }
        Value::Error(e) => Err(server(e)),
        v @ (Value::BulkString(_) | Value::SimpleString(_) | Value::BigNumber(_)) => {
            match text(&v).map(str::parse::<T>) {
                Some(Ok(n)) => Ok(n),
                _ => mismatch(what, &v),
            }
        }
        other => mismatch(what, &other),
    }
}

macro_rules! int_from_value {
    ($($t:ty => $what:literal),*) => {$(
        impl FromValue for $t {
            fn from_value(value: Value) -> Result<Self> {
                integer(value, $what)
            }
        }
    )*};
}

int_from_value!(
    i8 => "an i8", i16 => "an i16", i32 => "an i32", i64 => "an i64", isize => "an isize",
    u16 => "a u16", u32 => "a u32", u64 => "a u64", usize => "a usize"
);

impl FromValue for u8 {
    fn from_value(value: Value) -> Result<Self> {
        integer(value, "a u8")
    }

    fn from_value_list(value: Value) -> Result<Vec<u8>> {
        match plain(value) {
            Value::BulkString(b)
            | Value::SimpleString(b)
            | Value::VerbatimString { text: b, .. } => Ok(b.to_vec()),
            other => list_from_value(other),
        }
    }
}

macro_rules! float_from_value {
    ($($t:ty => $what:literal),*) => {$(
        impl FromValue for $t {
            fn from_value(value: Value) -> Result<Self> {
                match plain(value) {
                    Value::Double(d) => Ok(d as $t),
                    Value::Integer(n) => Ok(n as $t),
                    Value::Error(e) => Err(server(e)),
                    v @ (Value::BulkString(_) | Value::SimpleString(_) | Value::BigNumber(_)) => {
                        match text(&v).map(str::parse::<$t>) {
                            Some(Ok(n)) => Ok(n),
                            _ => mismatch($what, &v),
                        }
                    }
                    other => mismatch($what, &other),
                }
            }
        }
    )*};
}

float_from_value!(f64 => "a float", f32 => "a float");

impl FromValue for String {
    fn from_value(value: Value) -> Result<Self> {
        match plain(value) {
            Value::BulkString(b)
            | Value::SimpleString(b)
            | Value::BigNumber(b)
            | Value::VerbatimString { text: b, .. } => {
                String::from_utf8(b.to_vec()).map_err(|_| {
                    TypeError::new("a UTF-8 string", "a string that is not valid UTF-8").into()
                })
            }
            Value::Integer(n) => Ok(n.to_string()),
            Value::Double(d) => Ok(d.to_string()),
            Value::Boolean(b) => Ok(b.to_string()),
            Value::Error(e) => Err(server(e)),
            other => mismatch("a string", &other),
        }
    }
}

impl FromValue for Bytes {
    #[inline]
    fn from_value(value: Value) -> Result<Self> {
        // A bulk string is nearly always what comes: that path is small enough to inline into
        // every list conversion; the others are out of line.
        match value {
            Value::BulkString(b) => Ok(b),
            other => bytes_from_other(other),
        }
    }
}

#[inline(never)]
fn bytes_from_other(value: Value) -> Result<Bytes> {
    match plain(value) {
        Value::BulkString(b)
        | Value::SimpleString(b)
        | Value::BigNumber(b)
        | Value::VerbatimString { text: b, .. } => Ok(b),
        Value::Integer(n) => Ok(Bytes::from(n.to_string())),
        Value::Double(d) => Ok(Bytes::from(d.to_string())),
        Value::Error(e) => Err(server(e)),
        other => mismatch("a byte string", &other),
    }
}

impl<T: FromValue> FromValue for Option<T> {
    #[inline(always)]
    fn from_value(value: Value) -> Result<Self> {
        match value {
            Value::Null => Ok(None),
            // Attributes around a null still make `None`.
            Value::Attribute { .. } => match plain(value) {
                Value::Null => Ok(None),
                other => T::from_value(other).map(Some),
            },
            other => T::from_value(other).map(Some),
        }
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(value: Value) -> Result<Self> {
        T::from_value_list(value)
    }
}

impl<T: FromValue + Eq + Hash, S: BuildHasher + Default> FromValue for HashSet<T, S> {
    fn from_value(value: Value) -> Result<Self> {
        Ok(list_from_value::<T>(value)?.into_iter().collect())
    }
}

impl<T: FromValue + Ord> FromValue for BTreeSet<T> {
    fn from_value(value: Value) -> Result<Self> {
        Ok(list_from_value::<T>(value)?.into_iter().collect())
    }
}

impl<K: FromValue + Eq + Hash, V: FromValue, S: BuildHasher + Default> FromValue
    for HashMap<K, V, S>
{
    fn from_value(value: Value) -> Result<Self> {
        Ok(pairs_from_value::<K, V>(value)?.into_iter().collect())
    }
}

impl<K: FromValue + Ord, V: FromValue> FromValue for BTreeMap<K, V> {
    fn from_value(value: Value) -> Result<Self> {
        Ok(pairs_from_value::<K, V>(value)?.into_iter().collect())
    }
}

impl<T: FromValue> FromValue for std::result::Result<T, ServerError> {
    fn from_value(value: Value) -> Result<Self> {
        match value {
            Value::Error(e) => Ok(Err(ServerError::new(e))),
            other => T::from_value(other).map(Ok),
        }
    }
}

/// The elements of an array (or set) that must have exactly `n` of them.
fn exactly(value: Value, n: usize, expected: &'static str) -> Result<Vec<Value>> {
    match plain(value) {
        Value::Array(items) | Value::Set(items) | Value::Push(items) if items.len() == n => {
            Ok(items)
        }
        Value::Error(e) => Err(server(e)),
        other => mismatch(expected, &other),
    }
}

impl<A: FromValue, B: FromValue> FromValue for (A, B) {
    const IS_PAIR: bool = true;

    fn from_value(value: Value) -> Result<Self> {
        let mut it = exactly(value, 2, "an array of 2")?.into_iter();
        match (it.next(), it.next()) {
            (Some(a), Some(b)) => Ok((A::from_value(a)?, B::from_value(b)?)),
            _ => Err(TypeError::new("an array of 2", "a shorter array").into()),
        }
    }
}

macro_rules! tuple_from_value {
    ($n:literal $what:literal: $($name:ident)+) => {
        impl<$($name: FromValue),+> FromValue for ($($name,)+) {
            fn from_value(value: Value) -> Result<Self> {
                let mut it = exactly(value, $n, $what)?.into_iter();
                Ok(($(
                    $name::from_value(
                        it.next().ok_or_else(|| TypeError::new($what, "a shorter array"))?,
                    )?,
                )+))
            }
        }
    };
}

tuple_from_value!(1 "an array of 1": A);
tuple_from_value!(3 "an array of 3": A B C);
tuple_from_value!(4 "an array of 4": A B C D);
tuple_from_value!(5 "an array of 5": A B C D E);
tuple_from_value!(6 "an array of 6": A B C D E F);
tuple_from_value!(7 "an array of 7": A B C D E F G);
tuple_from_value!(8 "an array of 8": A B C D E F G H);
tuple_from_value!(9 "an array of 9": A B C D E F G H I);
tuple_from_value!(10 "an array of 10": A B C D E F G H I J);
tuple_from_value!(11 "an array of 11": A B C D E F G H I J K);
tuple_from_value!(12 "an array of 12": A B C D E F G H I J K L);

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn args(value: impl ToArgs) -> Vec<Vec<u8>> {
        let mut cmd = Cmd::new("X");
        value.push_to(&mut cmd);
        cmd.args().skip(1).map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn a_batch_takes_arguments_exactly_as_a_command_does() {
        use crate::options::{Expiry, SetOptions, StreamAddOptions, ZAddOptions};
        use std::time::Duration;

        // The typed commands of a pipeline are encoded into its batch; the others into a `Cmd`
        // copied into it: both must write the same bytes for every kind of argument.
        fn same(value: impl ToArgs) {
            let mut cmd = Cmd::new("CMD");
            value.push_to(&mut cmd);
            let mut direct = Batch::new();
            direct.start("CMD");
            value.push_to(&mut direct);
            assert_eq!(direct, Batch::from(&[cmd.clone()][..]), "{cmd:?}");
        }
        same("key");
        same(String::from("key"));
        same(&b"bin\r\nary"[..]);
        same(vec![0u8; 300]);
        same(Bytes::from_static(b"bytes"));
        same((1i64, -2i32, u64::MAX, 1.5f64));
        same(true);
        same(["a", "b", "c"]);
        same(vec![("field", 1u8), ("other", 2)]);
        same((0..12).collect::<Vec<u32>>());
        same(Some("x"));
        same(None::<&str>);
        same(());
        same(Expiry::after(Duration::from_millis(1500)));
        same(Expiry::KeepTtl);
        same(
            SetOptions::default()
                .only_if_absent()
                .expiry(Expiry::Persist)
                .get(),
        );
        same(ZAddOptions::default().greater().changed().incr());
        same(StreamAddOptions::default().max_len(1000, true).no_create());
        // Crossing ten arguments rewrites the header in both.
        same(("k", (0..20).map(|i| i.to_string()).collect::<Vec<_>>()));
    }

    #[test]
    fn arguments_are_one_per_element_and_byte_strings_are_one() {
        assert_eq!(args("a"), vec![b"a".to_vec()]);
        assert_eq!(args(["a", "b"]), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(args(&b"\x00\xff"[..]), vec![b"\x00\xff".to_vec()]);
        assert_eq!(args(vec![1u8, 2, 3]), vec![vec![1u8, 2, 3]]);
        assert_eq!(args(Bytes::from_static(b"b")), vec![b"b".to_vec()]);
        assert_eq!(
            args([("f1", 1), ("f2", -2)]),
            vec![
                b"f1".to_vec(),
                b"1".to_vec(),
                b"f2".to_vec(),
                b"-2".to_vec()
            ]
        );
        assert_eq!(args(i64::MIN), vec![i64::MIN.to_string().into_bytes()]);
        assert_eq!(args(u64::MAX), vec![u64::MAX.to_string().into_bytes()]);
        assert_eq!(args(1.5f64), vec![b"1.5".to_vec()]);
        assert_eq!(args(f64::INFINITY), vec![b"inf".to_vec()]);
        assert_eq!(args(true), vec![b"1".to_vec()]);
        assert_eq!(args(None::<&str>), Vec::<Vec<u8>>::new());
        assert_eq!(args(Some("x")), vec![b"x".to_vec()]);
        assert_eq!(args(String::from("s")), vec![b"s".to_vec()]);
        assert_eq!(args(()), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn scalars_convert_from_every_form_the_server_uses() {
        assert_eq!(i64::from_value(Value::Integer(-3)).unwrap(), -3);
        assert_eq!(i64::from_value(bulk("42")).unwrap(), 42);
        assert_eq!(u8::from_value(Value::Integer(255)).unwrap(), 255);
        assert_eq!(f64::from_value(bulk("1.5")).unwrap(), 1.5);
        assert_eq!(f64::from_value(bulk("inf")).unwrap(), f64::INFINITY);
        assert_eq!(f64::from_value(Value::Double(2.5)).unwrap(), 2.5);
        assert_eq!(f64::from_value(Value::Integer(2)).unwrap(), 2.0);
        assert!(bool::from_value(Value::SimpleString("OK".into())).unwrap());
        assert!(!bool::from_value(Value::Null).unwrap());
        assert!(bool::from_value(Value::Integer(1)).unwrap());
        assert!(bool::from_value(Value::Boolean(true)).unwrap());
        assert_eq!(String::from_value(bulk("héllo")).unwrap(), "héllo");
        assert_eq!(String::from_value(Value::Integer(5)).unwrap(), "5");
        assert_eq!(Vec::<u8>::from_value(bulk("raw")).unwrap(), b"raw".to_vec());
        assert_eq!(Bytes::from_value(bulk("b")).unwrap(), Bytes::from("b"));
        assert_eq!(Option::<String>::from_value(Value::Null).unwrap(), None);
        assert_eq!(
            Option::<i64>::from_value(Value::Integer(1)).unwrap(),
            Some(1)
        );
        assert_eq!(
            Value::from_value(Value::Integer(1)).unwrap(),
            Value::Integer(1)
        );
        <()>::from_value(Value::SimpleString("OK".into())).unwrap();
    }

    #[test]
    fn resp3_attributes_are_stripped_at_every_level() {
        let attributed = |v: Value| Value::Attribute {
            attributes: vec![(bulk("ttl"), Value::Integer(3))],
            value: Box::new(v),
        };
        assert_eq!(
            i64::from_value(attributed(attributed(Value::Integer(7)))).unwrap(),
            7
        );
        assert_eq!(
            Option::<Bytes>::from_value(attributed(Value::Null)).unwrap(),
            None
        );
        let list = attributed(Value::Array(vec![attributed(bulk("a")), Value::Null]));
        assert_eq!(
            Vec::<Option<Bytes>>::from_value(list).unwrap(),
            vec![Some(Bytes::from_static(b"a")), None]
        );
    }

    #[test]
    fn mismatches_name_what_was_expected_and_what_came() {
        let err = i64::from_value(bulk("twelve")).unwrap_err();
        assert_eq!(err.to_string(), "cannot convert a bulk string to an i64");
        let err = u8::from_value(Value::Integer(300)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot convert an integer out of its range to a u8"
        );
        let err = i64::from_value(Value::Null).unwrap_err();
        assert!(matches!(err, Error::Type(_)), "{err:?}");
        assert_eq!(err.to_string(), "cannot convert nil to an i64");
        let err = String::from_value(Value::BulkString(Bytes::from_static(b"\xff"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot convert a string that is not valid UTF-8 to a UTF-8 string"
        );
        let err = <(i64, i64)>::from_value(Value::Array(vec![Value::Integer(1)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot convert an array of 1 to an array of 2"
        );
        let err = Vec::<String>::from_value(Value::Integer(1)).unwrap_err();
        assert_eq!(err.to_string(), "cannot convert an integer to a list");
        // An error reply is the server's error, not a type error.
        let err = String::from_value(Value::Error("WRONGTYPE nope".into())).unwrap_err();
        assert_eq!(err.code(), Some("WRONGTYPE"));
    }

    #[test]
    fn collections_convert_from_resp2_and_resp3_shapes() {
        let flat = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        let map = Value::Map(vec![(bulk("a"), bulk("1")), (bulk("b"), bulk("2"))]);
        for reply in [flat.clone(), map.clone()] {
            let m: HashMap<String, i64> = FromValue::from_value(reply.clone()).unwrap();
            assert_eq!(m.get("b"), Some(&2));
            let m: BTreeMap<String, String> = FromValue::from_value(reply.clone()).unwrap();
            assert_eq!(m.len(), 2);
            let pairs: Vec<(String, i64)> = FromValue::from_value(reply.clone()).unwrap();
            assert_eq!(pairs, vec![("a".into(), 1), ("b".into(), 2)]);
            let all: Vec<String> = FromValue::from_value(reply).unwrap();
            assert_eq!(all, vec!["a", "1", "b", "2"]);
        }
        let nested = Value::Array(vec![
            Value::Array(vec![bulk("x"), Value::Double(1.5)]),
            Value::Array(vec![bulk("y"), Value::Double(2.5)]),
        ]);
        let scored: Vec<(String, f64)> = FromValue::from_value(nested).unwrap();
        assert_eq!(scored[1], ("y".into(), 2.5));
        let set: HashSet<String> =
            FromValue::from_value(Value::Set(vec![bulk("m"), bulk("n")])).unwrap();
        assert!(set.contains("n"));
        let odd = Value::Array(vec![bulk("a"), bulk("1"), bulk("b")]);
        assert!(HashMap::<String, String>::from_value(odd).is_err());
        let empty: Vec<String> = FromValue::from_value(Value::Null).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn tuples_and_in_place_errors() {
        let reply = Value::Array(vec![
            Value::SimpleString("OK".into()),
            Value::Error("WRONGTYPE x".into()),
            bulk("v"),
        ]);
        let ((), failed, v): ((), std::result::Result<i64, ServerError>, String) =
            FromValue::from_value(reply.clone()).unwrap();
        assert_eq!(failed.unwrap_err().code(), "WRONGTYPE");
        assert_eq!(v, "v");
        // Typed as a plain value, the error reply fails the conversion.
        let err = <((), i64, String)>::from_value(reply).unwrap_err();
        assert_eq!(err.code(), Some("WRONGTYPE"));
        let t: (i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64) =
            FromValue::from_value(Value::Array((0..12).map(Value::Integer).collect())).unwrap();
        assert_eq!(t.11, 11);
    }
}
