//! A pickle virtual machine for the subset `torch.save` writes (protocol 2, plus the protocol 4
//! opcodes newer writers use). It builds a plain value tree and calls nothing: `REDUCE` on an
//! unknown callable is recorded as an [`Object`] for the caller to interpret, and persistent ids
//! are kept as [`Value::Persistent`]. Containers are reference-counted so memo lookups are cheap
//! and a hostile file cannot blow up memory by repeated `GET`s, and nesting is capped so the
//! tree is never deep enough to overflow the stack when it is dropped.

use crate::error::{HeparError, Result};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

/// Deeper trees than this are rejected; `torch.save` of a state_dict nests about 4 levels.
const MAX_NESTING: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    /// A `module.name` reference (a class or function).
    Global(Rc<Global>),
    /// The result of `REDUCE`/`NEWOBJ` on a callable we do not evaluate.
    Object(Rc<Object>),
    /// A persistent id: `torch.save` refers to tensor storages this way.
    Persistent(Rc<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Seq {
    pub items: Vec<Value>,
    depth: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub entries: Vec<(Value, Value)>,
    depth: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub class: Global,
    pub args: Value,
    /// What `BUILD` set on the object, if anything.
    pub state: Option<Value>,
    depth: usize,
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            Value::Object(o) => o.depth,
            Value::Persistent(v) => v.depth() + 1,
            _ => 0,
        }
    }

    /// A short description for error messages.
    pub fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a string".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(s) => format!("a tuple of {}", s.items.len()),
            Value::List(s) => format!("a list of {}", s.items.len()),
            Value::Dict(m) => format!("a dict of {}", m.entries.len()),
            Value::Global(g) => format!("the global {}.{}", g.module, g.name),
            Value::Object(o) => format!("a {}.{} object", o.class.module, o.class.name),
            Value::Persistent(_) => "a persistent id".into(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(s) | Value::List(s) => Some(&s.items),
            _ => None,
        }
    }
}

fn seq(items: Vec<Value>) -> Seq {
    let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
    Seq { items, depth }
}

/// Stack entries: values, or the MARK that opens a variable-length group.
enum Slot {
    Mark,
    Value(Value),
}

struct Machine<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
}

/// Runs the pickle in `bytes` (`path` names the file in errors) and returns the value it builds.
pub fn unpickle(path: &Path, bytes: &[u8]) -> Result<Value> {
    let mut m = Machine {
        path,
        bytes,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    m.run()
}

impl<'a> Machine<'a> {
    fn fail(&self, at: usize, msg: impl std::fmt::Display) -> HeparError {
        HeparError::format(self.path, format!("pickle byte {at}: {msg}"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let bytes: &'a [u8] = self.bytes;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                self.fail(
                    self.pos,
                    format!("needs {n} more bytes, the pickle ends (truncated)"),
                )
            })?;
        let s = &bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn len_u64(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.fail(self.pos, format!("length {n} is too large")))
    }
    fn line(&mut self) -> Result<&'a str> {
        let bytes: &'a [u8] = self.bytes;
        let rest = &bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.fail(self.pos, "unterminated line"))?;
        let line = std::str::from_utf8(&rest[..n])
            .map_err(|_| self.fail(self.pos, "line is not UTF-8"))?;
        self.pos += n + 1;
        Ok(line)
    }
    fn utf8(&mut self, n: usize) -> Result<Value> {
        let at = self.pos;
        let s = self.take(n)?;
        let s = std::str::from_utf8(s).map_err(|_| self.fail(at, "string is not valid UTF-8"))?;
        Ok(Value::Str(Rc::from(s)))
    }

    fn push(&mut self, v: Value) -> Result<()> {
        if v.depth() > MAX_NESTING {
            return Err(self.fail(
                self.pos,
                format!("values nested deeper than {MAX_NESTING} levels"),
            ));
        }
        self.stack.push(Slot::Value(v));
        Ok(())
    }

    fn pop(&mut self, at: usize) -> Result<Value> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err(self.fail(at, "expected a value, found a MARK")),
            None => Err(self.fail(at, "stack underflow")),
        }
    }

    fn top_mut(&mut self, at: usize) -> Result<&mut Value> {
        if !matches!(self.stack.last(), Some(Slot::Value(_))) {
            return Err(self.fail(at, "expected a value on the stack"));
        }
        match self.stack.last_mut() {
            Some(Slot::Value(v)) => Ok(v),
            _ => Err(HeparError::format(
                self.path,
                "pickle stack changed unexpectedly",
            )),
        }
    }

    /// Pops everything above the topmost MARK, and the MARK.
    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.fail(at, "no MARK on the stack"))?;
        let items = self
            .stack
            .drain(mark..)
            .skip(1)
            .map(|s| match s {
                Slot::Value(v) => v,
                Slot::Mark => Value::None, // unreachable: `mark` is the topmost MARK
            })
            .collect();
        Ok(items)
    }

    fn pop_n(&mut self, n: usize, at: usize) -> Result<Vec<Value>> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.pop(at)?);
        }
        items.reverse();
        Ok(items)
    }

    fn set_items(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.fail(at, "SETITEMS with an odd number of values"));
        }
        let added_depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        let target = self.top_mut(at)?;
        let Value::Dict(map) = target else {
            let kind = target.kind();
            return Err(self.fail(at, format!("SETITEM on {kind}, expected a dict")));
        };
        let map = Rc::make_mut(map);
        map.depth = map.depth.max(added_depth);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            map.entries.push((k, v));
        }
        if map.depth > MAX_NESTING {
            return Err(self.fail(
                at,
                format!("values nested deeper than {MAX_NESTING} levels"),
            ));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        let added_depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        let target = self.top_mut(at)?;
        let Value::List(list) = target else {
            let kind = target.kind();
            return Err(self.fail(at, format!("APPEND on {kind}, expected a list")));
        };
        let list = Rc::make_mut(list);
        list.depth = list.depth.max(added_depth);
        list.items.extend(items);
        if list.depth > MAX_NESTING {
            return Err(self.fail(
                at,
                format!("values nested deeper than {MAX_NESTING} levels"),
            ));
        }
        Ok(())
    }

    fn reduce(&mut self, callable: Value, args: Value, at: usize) -> Result<Value> {
        let Value::Global(class) = callable else {
            return Err(self.fail(
                at,
                format!("REDUCE on {}, expected a global", callable.kind()),
            ));
        };
        // An OrderedDict is filled by the SETITEMS that follow, so it must be a real dict.
        if class.module == "collections" && class.name == "OrderedDict" {
            return Ok(Value::Dict(Rc::new(Map {
                entries: Vec::new(),
                depth: 1,
            })));
        }
        let depth = 1 + args.depth();
        Ok(Value::Object(Rc::new(Object {
            class: (*class).clone(),
            args,
            state: None,
            depth,
        })))
    }

    fn memo_get(&self, key: u32, at: usize) -> Result<Value> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.fail(at, format!("memo key {key} was never stored")))
    }

    fn memo_put(&mut self, key: u32, at: usize) -> Result<()> {
        let v = match self.stack.last() {
            Some(Slot::Value(v)) => v.clone(),
            _ => return Err(self.fail(at, "PUT with no value on the stack")),
        };
        self.memo.insert(key, v);
        Ok(())
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.fail(at, format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => {
                    let v = self.pop(at)?;
                    return Ok(v);
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or_else(|| self.fail(at, "POP on an empty stack"))?;
                }
                b'1' => {
                    self.pop_mark(at)?;
                }
                b'2' => {
                    let v = match self.stack.last() {
                        Some(Slot::Value(v)) => v.clone(),
                        _ => return Err(self.fail(at, "DUP with no value on the stack")),
                    };
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let v = self.long(n, at)?;
                    self.push(v)?
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let v = self.long(n, at)?;
                    self.push(v)?
                }
                b'G' => {
                    let s = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(s);
                    self.push(Value::Float(f64::from_be_bytes(a)))?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                // Python 2 byte strings: decoded leniently, they only ever hold ASCII names.
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let s = self.take(n)?;
                    self.push(Value::Str(Rc::from(String::from_utf8_lossy(s).as_ref())))?
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let s = self.take(n)?;
                    self.push(Value::Bytes(Rc::from(s)))?
                }
                b')' => self.push(Value::Tuple(Rc::new(seq(Vec::new()))))?,
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.push(Value::Tuple(Rc::new(seq(items))))?
                }
                0x85..=0x87 => {
                    let items = self.pop_n((op - 0x84) as usize, at)?;
                    self.push(Value::Tuple(Rc::new(seq(items))))?
                }
                b']' => self.push(Value::List(Rc::new(seq(Vec::new()))))?,
                b'l' => {
                    let items = self.pop_mark(at)?;
                    self.push(Value::List(Rc::new(seq(items))))?
                }
                b'a' => {
                    let v = self.pop(at)?;
                    self.append(vec![v], at)?
                }
                b'e' => {
                    let items = self.pop_mark(at)?;
                    self.append(items, at)?
                }
                b'}' => self.push(Value::Dict(Rc::new(Map {
                    entries: Vec::new(),
                    depth: 1,
                })))?,
                b'd' => {
                    let items = self.pop_mark(at)?;
                    self.push(Value::Dict(Rc::new(Map {
                        entries: Vec::new(),
                        depth: 1,
                    })))?;
                    self.set_items(items, at)?
                }
                b's' => {
                    let items = self.pop_n(2, at)?;
                    self.set_items(items, at)?
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    self.set_items(items, at)?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.push(Value::Global(Rc::new(Global { module, name })))?
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                        return Err(self.fail(at, "STACK_GLOBAL needs two strings"));
                    };
                    let g = Global {
                        module: module.to_string(),
                        name: name.to_string(),
                    };
                    self.push(Value::Global(Rc::new(g)))?
                }
                b'R' | 0x81 => {
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let v = self.reduce(callable, args, at)?;
                    self.push(v)?
                }
                b'b' => {
                    let state = self.pop(at)?;
                    let state_depth = state.depth();
                    let target = self.top_mut(at)?;
                    match target {
                        // Attributes on a dict (an OrderedDict's `_metadata`) are not content.
                        Value::Dict(_) => {}
                        Value::Object(obj) => {
                            let obj = Rc::make_mut(obj);
                            obj.depth = obj.depth.max(1 + state_depth);
                            obj.state = Some(state);
                        }
                        other => {
                            let kind = other.kind();
                            return Err(self.fail(at, format!("BUILD on {kind}")));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    self.push(Value::Persistent(Rc::new(pid)))?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k, at)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k, at)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k, at)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    let v = self.memo_get(k, at)?;
                    self.push(v)?
                }
                b'j' => {
                    let k = self.u32()?;
                    let v = self.memo_get(k, at)?;
                    self.push(v)?
                }
                other => {
                    return Err(self.fail(at, format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }

    /// LONG1/LONG4: little-endian two's complement of `n` bytes; must fit in an i64.
    fn long(&mut self, n: usize, at: usize) -> Result<Value> {
        let s = self.take(n)?;
        if n == 0 {
            return Ok(Value::Int(0));
        }
        if n > 8 {
            return Err(self.fail(at, format!("integer of {n} bytes does not fit in 64 bits")));
        }
        let fill = if s[n - 1] & 0x80 != 0 { 0xFF } else { 0 };
        let mut a = [fill; 8];
        a[..n].copy_from_slice(s);
        Ok(Value::Int(i64::from_le_bytes(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_support::PickleBuilder;

    #[test]
    fn builds_ordered_dict_with_reduce_and_memo() {
        let mut p = PickleBuilder::new();
        p.global("collections", "OrderedDict")
            .empty_tuple()
            .reduce()
            .put(0);
        p.mark().unicode("a").int(5).unicode("b").get(0).set_items();
        p.empty_dict().build().stop(); // `_metadata`-style attributes set on the dict
        let v = unpickle(Path::new("x.pkl"), &p.bytes).unwrap();
        let Value::Dict(d) = v else {
            panic!("expected a dict")
        };
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.entries[0].1, Value::Int(5));
        // The memo holds the dict as it was when PUT ran (empty), which is all torch.save needs.
        assert!(matches!(&d.entries[1].1, Value::Dict(inner) if inner.entries.is_empty()));
    }

    #[test]
    fn integers_of_every_width() {
        for (v, expect) in [
            (-1i64, -1i64),
            (300, 300),
            (70_000, 70_000),
            (-(1 << 40), -(1 << 40)),
        ] {
            let mut p = PickleBuilder::new();
            p.int(v).stop();
            assert_eq!(
                unpickle(Path::new("i"), &p.bytes).unwrap(),
                Value::Int(expect)
            );
        }
    }

    #[test]
    fn errors_name_file_and_position() {
        let err = unpickle(Path::new("m.pkl"), &[0x80, 2, b'X', 10, 0, 0, 0, b'a'])
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.pkl") && err.contains("truncated"), "{err}");
        let err = unpickle(Path::new("m.pkl"), &[0x80, 2, 0xff])
            .unwrap_err()
            .to_string();
        assert!(err.contains("opcode 0xff"), "{err}");
        let err = unpickle(Path::new("m.pkl"), &[b'h', 3, b'.'])
            .unwrap_err()
            .to_string();
        assert!(err.contains("memo key 3"), "{err}");
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowing() {
        let mut bytes = vec![b')'];
        bytes.extend(std::iter::repeat_n(0x85u8, 100_000));
        bytes.push(b'.');
        let err = unpickle(Path::new("deep"), &bytes).unwrap_err().to_string();
        assert!(err.contains("nested deeper"), "{err}");
    }

    #[test]
    fn memo_doubling_stays_cheap() {
        // Each round makes a tuple of two references to the previous one: 2^60 leaves if copied.
        let mut bytes = vec![b')', b'q', 0];
        for _ in 0..60 {
            bytes.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
        }
        bytes.push(b'.');
        assert!(unpickle(Path::new("wide"), &bytes).is_ok());
    }
}
