//! The primitive op codes every backend implements. Keeping them as data (not closures) lets a
//! CUDA backend map each one to a kernel.

/// Elementwise functions of one operand. Parameters are f64 and converted to the storage type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Abs,
    Square,
    Recip,
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Silu,
    Gelu,
    Tanh,
    /// `x * mul + add`.
    Affine { mul: f64, add: f64 },
    /// `x ^ exponent` for a scalar exponent.
    Powf(f64),
    Clamp { min: f64, max: f64 },
    /// `max(x, scalar)`
    MaxScalar(f64),
    /// `min(x, scalar)`
    MinScalar(f64),
    /// 1 where `x > 0`, else 0.
    Positive,
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Square => "square",
            UnaryOp::Recip => "recip",
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu(_) => "leaky_relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Silu => "silu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Affine { .. } => "affine",
            UnaryOp::Powf(_) => "powf",
            UnaryOp::Clamp { .. } => "clamp",
            UnaryOp::MaxScalar(_) => "max_scalar",
            UnaryOp::MinScalar(_) => "min_scalar",
            UnaryOp::Positive => "positive",
        }
    }
}

/// Elementwise functions of two operands of the same (already broadcast) shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    /// 1 where equal, else 0.
    Equal,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Equal => "equal",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
}
