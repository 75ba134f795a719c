//! The values a Java serialization stream holds, as [`super::read_stream`] returns
//! them, and its [`Error`].

use std::fmt;
use std::rc::Rc;

/// Why a stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error {
    /// Byte offset where reading stopped.
    pub(crate) offset: usize,
    /// What was wrong there.
    pub(crate) message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for Error {}

/// One value of a stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `null`.
    Null,
    /// A primitive field or array element, widened.
    Int(i64),
    /// A `float` or `double`.
    Float(f64),
    /// A `boolean`.
    Bool(bool),
    /// A `char`.
    Char(u16),
    /// A `String`.
    Str(Rc<str>),
    /// An object.
    Object(Rc<Object>),
    /// An array: its class name (`[I`, `[Ljava.lang.String;`) and elements.
    Array(Rc<str>, Rc<Vec<Value>>),
    /// An enum constant: class and constant name.
    Enum(Rc<str>, Rc<str>),
    /// A `Class` object (its name).
    Class(Rc<str>),
    /// A reference to an object whose reading had not finished (a cycle).
    Cycle,
}

/// One top-level item of a stream: an object or raw block data (`writeInt`,
/// `writeUTF`, ... of a `writeObject` method or of the stream's writer).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Content {
    /// A value written with `writeObject`.
    Value(Value),
    /// Bytes written with the `DataOutput` methods.
    Block(Vec<u8>),
}

/// An object: its class, the fields of each class from the most general to the
/// class itself, and what custom `writeObject` methods added.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object {
    /// The object's class name.
    pub(crate) class: Rc<str>,
    /// Every serialized field (name, value), superclasses' first.
    pub(crate) fields: Vec<(Rc<str>, Value)>,
    /// What `writeObject`/`writeExternal` methods wrote after the fields.
    pub(crate) annotations: Vec<Content>,
}

impl Object {
    /// The field `name` (of the most specific class that has one).
    pub(crate) fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().rev().find(|(n, _)| &**n == name).map(|(_, v)| v)
    }
}

impl Value {
    /// The object, if this is one.
    pub(crate) fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The first object (depth-first, this one included) whose class is `class`,
    /// looking at no more than 100 000 values (shared references can make a small
    /// stream a huge tree).
    pub(crate) fn find_object(&self, class: &str) -> Option<&Object> {
        let mut stack = vec![self];
        let mut budget = 100_000usize;
        while let Some(v) = stack.pop() {
            budget = budget.checked_sub(1)?;
            match v {
                Value::Object(o) => {
                    if &*o.class == class {
                        return Some(o);
                    }
                    for c in o.annotations.iter().rev() {
                        if let Content::Value(v) = c {
                            stack.push(v);
                        }
                    }
                    stack.extend(o.fields.iter().rev().map(|(_, v)| v));
                }
                Value::Array(_, items) => stack.extend(items.iter().rev()),
                _ => {}
            }
        }
        None
    }
}
