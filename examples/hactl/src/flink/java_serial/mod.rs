//! A reader of the Java Object Serialization Stream format (`ObjectOutputStream`,
//! protocol version 2), enough to read what Flink's HA services store: objects of any
//! class (fields by name, custom `writeObject` data), strings, arrays, enums and block
//! data.
//!
//! Written here rather than taken from a crate: the Rust crates for it (`jaded`,
//! `java-serialization`) are little used, and `jaded`'s accessors panic on an
//! unexpected shape (as its docs say). This reader is bounded by design (nesting
//! depth, value count, every length checked against the input before anything is
//! allocated) and never panics: any input gives a value or an [`Error`] saying what is
//! wrong at which offset. Unknown classes are no error: their fields are read from the
//! class descriptor, as Java itself does. Only `Externalizable` objects written with
//! the old protocol 1 cannot be read (their length is not in the stream).

mod value;

use std::rc::Rc;

pub(crate) use value::{Content, Error, Object, Value};

const MAGIC: u16 = 0xACED;
const VERSION: u16 = 5;
const BASE_HANDLE: u32 = 0x7E_0000;
/// Nesting depth beyond which a stream is refused (Flink's values nest < 10 deep).
const MAX_DEPTH: usize = 100;
/// Values (objects, strings, array elements, ...) one stream may hold.
const MAX_VALUES: usize = 1_000_000;

const TC_NULL: u8 = 0x70;
const TC_REFERENCE: u8 = 0x71;
const TC_CLASSDESC: u8 = 0x72;
const TC_OBJECT: u8 = 0x73;
const TC_STRING: u8 = 0x74;
const TC_ARRAY: u8 = 0x75;
const TC_CLASS: u8 = 0x76;
const TC_BLOCKDATA: u8 = 0x77;
const TC_ENDBLOCKDATA: u8 = 0x78;
const TC_RESET: u8 = 0x79;
const TC_BLOCKDATALONG: u8 = 0x7A;
const TC_EXCEPTION: u8 = 0x7B;
const TC_LONGSTRING: u8 = 0x7C;
const TC_PROXYCLASSDESC: u8 = 0x7D;
const TC_ENUM: u8 = 0x7E;

const SC_WRITE_METHOD: u8 = 0x01;
const SC_SERIALIZABLE: u8 = 0x02;
const SC_EXTERNALIZABLE: u8 = 0x04;
const SC_BLOCK_DATA: u8 = 0x08;

#[derive(Debug)]
struct Field {
    name: Rc<str>,
    /// `B C D F I J S Z [ L`.
    code: u8,
}

#[derive(Debug)]
struct ClassDesc {
    name: Rc<str>,
    flags: u8,
    fields: Vec<Field>,
    superclass: Option<Rc<ClassDesc>>,
}

#[derive(Debug, Clone)]
enum Handle {
    Class(Option<Rc<ClassDesc>>),
    Value(Value),
    Pending,
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    handles: Vec<Handle>,
    depth: usize,
    values: usize,
}

type Result<T> = std::result::Result<T, Error>;

/// Reads a whole stream: its top-level objects and block data, in order.
pub(crate) fn read_stream(input: &[u8]) -> Result<Vec<Content>> {
    let mut r = Reader {
        input,
        pos: 0,
        handles: Vec::new(),
        depth: 0,
        values: 0,
    };
    if r.u16()? != MAGIC {
        return Err(r.error_at(0, "not a Java serialization stream (no 0xACED magic)"));
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(r.error_at(2, format!("unsupported stream version {version}")));
    }
    let mut out = Vec::new();
    while r.pos < r.input.len() {
        match r.content()? {
            Some(Content::Block(bytes)) => match out.last_mut() {
                // Block data is cut into blocks of at most 1024 bytes: join them.
                Some(Content::Block(last)) => last.extend_from_slice(&bytes),
                _ => out.push(Content::Block(bytes)),
            },
            Some(c) => out.push(c),
            None => return Err(r.error("TC_ENDBLOCKDATA outside of an object")),
        }
    }
    Ok(out)
}

/// Reads a `DataOutput.writeUTF` string at the start of `bytes`; returns it and the
/// rest.
pub(crate) fn read_utf(bytes: &[u8]) -> Result<(String, &[u8])> {
    let err = |message: &str| Error {
        offset: 0,
        message: message.to_string(),
    };
    let (len, rest) = match bytes {
        [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
        _ => return Err(err("truncated string length")),
    };
    if rest.len() < len {
        return Err(err("truncated string"));
    }
    let (s, rest) = rest.split_at(len);
    Ok((String::from_utf8_lossy(s).into_owned(), rest))
}

impl<'a> Reader<'a> {
    fn error(&self, message: impl Into<String>) -> Error {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> Error {
        Error {
            offset,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.input.len())
            .ok_or_else(|| self.error(format!("truncated: {n} more bytes expected")))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn peek(&self) -> Result<u8> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error("truncated: a type code expected"))
    }

    fn utf(&mut self) -> Result<Rc<str>> {
        let len = usize::from(self.u16()?);
        Ok(String::from_utf8_lossy(self.take(len)?).into())
    }

    fn long_utf(&mut self) -> Result<Rc<str>> {
        let len = self.i64()?;
        let len = usize::try_from(len).map_err(|_| self.error(format!("bad long string length {len}")))?;
        Ok(String::from_utf8_lossy(self.take(len)?).into())
    }

    fn count(&mut self) -> Result<()> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(self.error(format!("more than {MAX_VALUES} values")));
        }
        Ok(())
    }

    /// Completes handle `h` (gone if a TC_RESET came in between).
    fn set_handle(&mut self, h: usize, value: Handle) {
        if let Some(slot) = self.handles.get_mut(h) {
            *slot = value;
        }
    }

    fn new_handle(&mut self, h: Handle) -> usize {
        self.handles.push(h);
        self.handles.len() - 1
    }

    fn handle(&mut self) -> Result<Handle> {
        let at = self.pos;
        let raw = self.i32()? as u32;
        raw.checked_sub(BASE_HANDLE)
            .and_then(|i| self.handles.get(i as usize))
            .cloned()
            .ok_or_else(|| self.error_at(at, format!("reference to unknown handle {raw:#x}")))
    }

    /// `content`: an object or block data; `None` for TC_ENDBLOCKDATA.
    fn content(&mut self) -> Result<Option<Content>> {
        match self.peek()? {
            TC_BLOCKDATA => {
                self.pos += 1;
                let n = usize::from(self.u8()?);
                Ok(Some(Content::Block(self.take(n)?.to_vec())))
            }
            TC_BLOCKDATALONG => {
                self.pos += 1;
                let n = self.i32()?;
                let n = usize::try_from(n).map_err(|_| self.error(format!("bad block length {n}")))?;
                Ok(Some(Content::Block(self.take(n)?.to_vec())))
            }
            TC_ENDBLOCKDATA => {
                self.pos += 1;
                Ok(None)
            }
            _ => Ok(Some(Content::Value(self.value()?))),
        }
    }

    /// Contents up to and including TC_ENDBLOCKDATA.
    fn annotations(&mut self) -> Result<Vec<Content>> {
        let mut out = Vec::new();
        while let Some(c) = self.content()? {
            out.push(c);
        }
        Ok(out)
    }

    fn value(&mut self) -> Result<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        self.count()?;
        let v = self.value_inner();
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self) -> Result<Value> {
        while self.peek()? == TC_RESET {
            self.pos += 1;
            self.handles.clear();
        }
        let at = self.pos;
        match self.u8()? {
            TC_NULL => Ok(Value::Null),
            TC_REFERENCE => match self.handle()? {
                Handle::Value(v) => Ok(v),
                Handle::Pending => Ok(Value::Cycle),
                Handle::Class(c) => Ok(Value::Class(c.map_or_else(|| "null".into(), |c| c.name.clone()))),
            },
            TC_STRING => {
                let s = Value::Str(self.utf()?);
                self.new_handle(Handle::Value(s.clone()));
                Ok(s)
            }
            TC_LONGSTRING => {
                let s = Value::Str(self.long_utf()?);
                self.new_handle(Handle::Value(s.clone()));
                Ok(s)
            }
            TC_CLASS => {
                let desc = self.class_desc()?;
                let v = Value::Class(desc.map_or_else(|| "null".into(), |c| c.name.clone()));
                self.new_handle(Handle::Value(v.clone()));
                Ok(v)
            }
            TC_CLASSDESC | TC_PROXYCLASSDESC => {
                self.pos = at;
                let desc = self.class_desc()?;
                Ok(Value::Class(desc.map_or_else(|| "null".into(), |c| c.name.clone())))
            }
            TC_ENUM => {
                let desc = self.required_class_desc()?;
                let h = self.new_handle(Handle::Pending);
                let name = match self.value()? {
                    Value::Str(s) => s,
                    _ => return Err(self.error("enum constant name is not a string")),
                };
                let v = Value::Enum(desc.name.clone(), name);
                self.set_handle(h, Handle::Value(v.clone()));
                Ok(v)
            }
            TC_ARRAY => self.array_value(),
            TC_OBJECT => self.object(),
            TC_EXCEPTION => Err(self.error_at(at, "the writer failed: the stream holds an exception")),
            code => Err(self.error_at(at, format!("unknown type code {code:#04x}"))),
        }
    }

    fn required_class_desc(&mut self) -> Result<Rc<ClassDesc>> {
        let at = self.pos;
        self.class_desc()?
            .ok_or_else(|| self.error_at(at, "class descriptor is null"))
    }

    /// `classDesc`: a new descriptor, a proxy descriptor, a reference or null.
    fn class_desc(&mut self) -> Result<Option<Rc<ClassDesc>>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        let d = self.class_desc_inner();
        self.depth -= 1;
        d
    }

    fn class_desc_inner(&mut self) -> Result<Option<Rc<ClassDesc>>> {
        let at = self.pos;
        match self.u8()? {
            TC_NULL => Ok(None),
            TC_REFERENCE => match self.handle()? {
                Handle::Class(c) => Ok(c),
                _ => Err(self.error_at(at, "reference to a non-class where a class descriptor belongs")),
            },
            TC_CLASSDESC => {
                let name = self.utf()?;
                let _serial_version_uid = self.i64()?;
                let h = self.new_handle(Handle::Pending);
                let flags = self.u8()?;
                let n = self.u16()?;
                let mut fields = Vec::new();
                for _ in 0..n {
                    self.count()?;
                    let code = self.u8()?;
                    let field_name = self.utf()?;
                    match code {
                        b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S' | b'Z' => {}
                        b'[' | b'L' => {
                            // The field's type name, a String object.
                            self.value()?;
                        }
                        _ => return Err(self.error(format!("field `{field_name}` has unknown type code {code:#04x}"))),
                    }
                    fields.push(Field { name: field_name, code });
                }
                self.annotations()?;
                let superclass = self.class_desc()?;
                let desc = Rc::new(ClassDesc {
                    name,
                    flags,
                    fields,
                    superclass,
                });
                self.set_handle(h, Handle::Class(Some(desc.clone())));
                Ok(Some(desc))
            }
            TC_PROXYCLASSDESC => {
                let h = self.new_handle(Handle::Pending);
                let n = self.i32()?;
                if n < 0 {
                    return Err(self.error(format!("negative interface count {n}")));
                }
                let mut names = Vec::new();
                for _ in 0..n {
                    self.count()?;
                    names.push(self.utf()?.to_string());
                }
                self.annotations()?;
                let superclass = self.class_desc()?;
                let desc = Rc::new(ClassDesc {
                    name: format!("proxy[{}]", names.join(",")).into(),
                    flags: SC_SERIALIZABLE,
                    fields: Vec::new(),
                    superclass,
                });
                self.set_handle(h, Handle::Class(Some(desc.clone())));
                Ok(Some(desc))
            }
            code => Err(self.error_at(at, format!("type code {code:#04x} where a class descriptor belongs"))),
        }
    }

    fn array_value(&mut self) -> Result<Value> {
        let desc = self.required_class_desc()?;
        let h = self.new_handle(Handle::Pending);
        let at = self.pos;
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| self.error_at(at, format!("negative array length {n}")))?;
        let code = desc.name.as_bytes().get(1).copied().unwrap_or(0);
        let mut items = Vec::new();
        for _ in 0..n {
            self.count()?;
            items.push(self.field_value(code)?);
        }
        let v = Value::Array(desc.name.clone(), Rc::new(items));
        self.set_handle(h, Handle::Value(v.clone()));
        Ok(v)
    }

    fn field_value(&mut self, code: u8) -> Result<Value> {
        Ok(match code {
            b'B' => Value::Int(i64::from(self.u8()? as i8)),
            b'C' => Value::Char(self.u16()?),
            b'D' => Value::Float(f64::from_bits(self.i64()? as u64)),
            b'F' => Value::Float(f64::from(f32::from_bits(self.i32()? as u32))),
            b'I' => Value::Int(i64::from(self.i32()?)),
            b'J' => Value::Int(self.i64()?),
            b'S' => Value::Int(i64::from(self.u16()? as i16)),
            b'Z' => Value::Bool(self.u8()? != 0),
            b'[' | b'L' => self.value()?,
            other => return Err(self.error(format!("unknown element type code {other:#04x}"))),
        })
    }

    fn object(&mut self) -> Result<Value> {
        let desc = self.required_class_desc()?;
        let h = self.new_handle(Handle::Pending);
        let mut chain = Vec::new();
        let mut next = Some(desc.clone());
        while let Some(d) = next {
            if chain.len() > MAX_DEPTH {
                return Err(self.error(format!("class `{}` has more than {MAX_DEPTH} superclasses", desc.name)));
            }
            next = d.superclass.clone();
            chain.push(d);
        }
        let mut fields = Vec::new();
        let mut annotations = Vec::new();
        for d in chain.iter().rev() {
            if d.flags & SC_EXTERNALIZABLE != 0 {
                if d.flags & SC_BLOCK_DATA == 0 {
                    return Err(self.error(format!(
                        "class `{}` is Externalizable in the old protocol 1, which cannot be read",
                        d.name
                    )));
                }
                annotations.extend(self.annotations()?);
                continue;
            }
            if d.flags & SC_SERIALIZABLE == 0 {
                continue;
            }
            for f in &d.fields {
                let v = self.field_value(f.code)?;
                fields.push((f.name.clone(), v));
            }
            if d.flags & SC_WRITE_METHOD != 0 {
                annotations.extend(self.annotations()?);
            }
        }
        let v = Value::Object(Rc::new(Object {
            class: desc.name.clone(),
            fields,
            annotations,
        }));
        self.set_handle(h, Handle::Value(v.clone()));
        Ok(v)
    }
}
