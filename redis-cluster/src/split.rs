//! The commands the command table declares split by slot (MGET, MSET, DEL...) or sent to every
//! master (DBSIZE, KEYS, FLUSHALL, WAIT...): how the parts are cut and how their answers are
//! put back together. Sending them is the client's; this module touches no socket.

use std::collections::BTreeMap;

use redis_conn::table::{Combine, Merge};
use redis_conn::{Batch, Cmd, Error, ServerError, Value};

use crate::{slot, ClusterError};

/// A multi-key command cut into one command per slot.
#[derive(Debug)]
pub(crate) struct SplitPlan {
    merge: Merge,
    /// One command per slot, in slot order.
    parts: Batch,
    /// Each part's slot.
    slots: Vec<u16>,
    /// For each part, the positions of its keys among the command's keys.
    positions: Vec<Vec<usize>>,
    /// How many keys the command has.
    keys: usize,
}

impl SplitPlan {
    /// Cuts `cmd` by the slots of its keys (key/value pairs for [`Merge::AllOk`], MSET).
    pub(crate) fn new(cmd: &Cmd, merge: Merge) -> SplitPlan {
        let args: Vec<&[u8]> = cmd.args().collect();
        let width = if merge == Merge::AllOk { 2 } else { 1 };
        let items: Vec<&[&[u8]]> = args[1..].chunks(width).collect();
        let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            groups.entry(slot(item[0])).or_default().push(i);
        }
        let mut parts = Batch::with_capacity(groups.len(), 0);
        let mut slots = Vec::with_capacity(groups.len());
        let mut positions = Vec::with_capacity(groups.len());
        for (group_slot, indexes) in groups {
            parts.start(args[0]);
            for &i in &indexes {
                for part in items[i] {
                    parts.push_arg(part);
                }
            }
            slots.push(group_slot);
            positions.push(indexes);
        }
        SplitPlan {
            merge,
            parts,
            slots,
            positions,
            keys: items.len(),
        }
    }

    /// One command per slot.
    pub(crate) fn parts(&self) -> &Batch {
        &self.parts
    }

    /// Each part's slot, in the order of [`SplitPlan::parts`].
    pub(crate) fn slots(&self) -> &[u16] {
        &self.slots
    }

    /// The command's answer from its parts' replies (in the order of the parts): values in
    /// the caller's key order, a sum, or OK. An error reply of any part is the answer.
    pub(crate) fn merge(self, replies: Vec<Value>) -> Result<Value, ClusterError> {
        let in_order = self.merge == Merge::InKeyOrder;
        let mut values = vec![Value::Null; if in_order { self.keys } else { 0 }];
        let mut sum = 0i64;
        for (indexes, reply) in self.positions.into_iter().zip(replies) {
            match (self.merge, reply) {
                (_, Value::Error(e)) => {
                    return Err(ClusterError::Node(Error::Server(ServerError::new(e))));
                }
                (Merge::InKeyOrder, Value::Array(found)) => {
                    for (pos, value) in indexes.into_iter().zip(found) {
                        values[pos] = value;
                    }
                }
                (Merge::Sum, Value::Integer(n)) => sum += n,
                (Merge::AllOk, _) => {}
                (_, other) => {
                    return Err(ClusterError::Node(Error::Unsupported(format!(
                        "unexpected reply to a split command: {other:?}"
                    ))));
                }
            }
        }
        Ok(match self.merge {
            Merge::InKeyOrder => Value::Array(values),
            Merge::Sum => Value::Integer(sum),
            Merge::AllOk => Value::SimpleString("OK".into()),
        })
    }
}

/// The answers of every master to one command, combined as they arrive.
#[derive(Debug)]
pub(crate) struct Combined {
    combine: Combine,
    sum: i64,
    all: Vec<Value>,
    first: Option<Value>,
}

impl Combined {
    /// No answer yet.
    pub(crate) fn new(combine: Combine) -> Combined {
        Combined {
            combine,
            sum: 0,
            all: Vec::new(),
            first: None,
        }
    }

    /// One master's answer.
    pub(crate) fn add(&mut self, value: Value) {
        match (self.combine, value) {
            (Combine::Sum, Value::Integer(n)) => self.sum += n,
            (Combine::Concat, Value::Array(items)) => self.all.extend(items),
            (Combine::Fewest, v) => {
                self.first = Some(match self.first.take() {
                    Some(so_far) => redis_conn::node::fewer_acknowledgements(so_far, v),
                    None => v,
                });
            }
            (_, v) => {
                self.first.get_or_insert(v);
            }
        }
    }

    /// The answer of the cluster.
    pub(crate) fn finish(self) -> Value {
        match self.combine {
            Combine::Sum => Value::Integer(self.sum),
            Combine::Concat => Value::Array(self.all),
            Combine::Same | Combine::Fewest => self.first.unwrap_or(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(bytes::Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn mget_is_cut_by_slot_and_answers_in_the_callers_key_order() {
        let cmd = Cmd::new("MGET").arg("a").arg("b").arg("{a}x");
        let plan = SplitPlan::new(&cmd, Merge::InKeyOrder);
        let (a, b) = (slot(b"a"), slot(b"b"));
        let mut want = [a, b];
        want.sort_unstable();
        assert_eq!(plan.slots(), &want[..]);
        assert_eq!(plan.parts().len(), 2);
        // Replies come in slot order; the slot of "a" holds keys 0 and 2.
        let reply_a = Value::Array(vec![bulk("A"), bulk("X")]);
        let reply_b = Value::Array(vec![bulk("B")]);
        let replies = if a < b {
            vec![reply_a, reply_b]
        } else {
            vec![reply_b, reply_a]
        };
        assert_eq!(
            plan.merge(replies).unwrap(),
            Value::Array(vec![bulk("A"), bulk("B"), bulk("X")])
        );
    }

    #[test]
    fn mset_keeps_pairs_together_and_counts_are_summed() {
        let cmd = Cmd::new("MSET").arg("a").arg("1").arg("b").arg("2");
        let plan = SplitPlan::new(&cmd, Merge::AllOk);
        let parts: Vec<Vec<u8>> = plan
            .parts()
            .iter()
            .map(|c| c.args().skip(1).flatten().copied().collect())
            .collect();
        assert!(parts.contains(&b"a1".to_vec()) && parts.contains(&b"b2".to_vec()));
        let ok = Value::SimpleString("OK".into());
        assert_eq!(plan.merge(vec![ok.clone(), ok.clone()]).unwrap(), ok);

        let del = SplitPlan::new(&Cmd::new("DEL").arg("a").arg("b"), Merge::Sum);
        assert_eq!(
            del.merge(vec![Value::Integer(1), Value::Integer(1)])
                .unwrap(),
            Value::Integer(2)
        );
    }

    #[test]
    fn an_error_or_a_strange_reply_of_a_part_is_the_answer() {
        let del = || SplitPlan::new(&Cmd::new("DEL").arg("a").arg("b"), Merge::Sum);
        let err = del()
            .merge(vec![Value::Integer(1), Value::Error("ERR no".into())])
            .unwrap_err();
        assert!(
            matches!(err, ClusterError::Node(Error::Server(_))),
            "{err:?}"
        );
        let err = del()
            .merge(vec![Value::Integer(1), bulk("what")])
            .unwrap_err();
        assert!(
            matches!(err, ClusterError::Node(Error::Unsupported(_))),
            "{err:?}"
        );
    }

    #[test]
    fn every_masters_answer_combines_as_the_table_says() {
        let combine = |how: Combine, answers: Vec<Value>| {
            let mut combined = Combined::new(how);
            answers.into_iter().for_each(|v| combined.add(v));
            combined.finish()
        };
        assert_eq!(
            combine(Combine::Sum, vec![Value::Integer(2), Value::Integer(3)]),
            Value::Integer(5)
        );
        assert_eq!(
            combine(
                Combine::Concat,
                vec![Value::Array(vec![bulk("a")]), Value::Array(vec![bulk("b")])]
            ),
            Value::Array(vec![bulk("a"), bulk("b")])
        );
        assert_eq!(
            combine(Combine::Fewest, vec![Value::Integer(2), Value::Integer(1)]),
            Value::Integer(1)
        );
        assert_eq!(
            combine(Combine::Same, vec![bulk("sha"), bulk("sha")]),
            bulk("sha")
        );
        assert_eq!(combine(Combine::Same, vec![]), Value::Null);
    }
}
