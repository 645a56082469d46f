//! PTX text to [`Module`]: statements are split, declarations collected, and every instruction is
//! decoded into an [`Instr`] with registers, labels and symbols resolved.

use std::collections::HashMap;

use super::program::*;
use crate::error::{HeparError, Result};

fn parse_error(module: &str, line: u32, msg: impl std::fmt::Display) -> HeparError {
    HeparError::Backend {
        backend: "ptx-vm",
        msg: format!("{module}:{line}: {msg}"),
    }
}

#[derive(Debug)]
enum Stmt {
    Text(String, u32),
    Open(String, u32),
    Close(u32),
}

/// Replaces comments by spaces, keeping newlines so line numbers stay right.
fn strip_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if c == b'"' {
                in_string = false;
            }
            out.push(c as char);
            i += 1;
        } else if c == b'"' {
            in_string = true;
            out.push('"');
            i += 1;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                if bytes[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

/// Splits the text into statements and scope braces. A `{` opens a scope when it starts a statement
/// or follows a function header; otherwise it belongs to the statement (vector operand, initializer).
fn split_statements(text: &str) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    let mut cur = String::new();
    let mut line = 1u32;
    let mut start_line = 1u32;
    let mut inner_depth = 0usize;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if cur.trim().is_empty() {
            start_line = line;
        }
        match c {
            '{' if inner_depth == 0 => {
                let head = cur.trim();
                let is_header = head.contains(".entry") || head.contains(".func");
                let is_label_only = !head.is_empty() && head.ends_with(':') && !head.contains(' ');
                if head.is_empty() || is_header || is_label_only {
                    if is_label_only {
                        stmts.push(Stmt::Text(head.to_string(), start_line));
                        stmts.push(Stmt::Open(String::new(), line));
                    } else {
                        stmts.push(Stmt::Open(head.to_string(), start_line));
                    }
                    cur.clear();
                } else {
                    inner_depth = 1;
                    cur.push(c);
                }
            }
            '{' => {
                inner_depth += 1;
                cur.push(c);
            }
            '}' if inner_depth > 0 => {
                inner_depth -= 1;
                cur.push(c);
            }
            '}' => {
                if !cur.trim().is_empty() {
                    stmts.push(Stmt::Text(cur.trim().to_string(), start_line));
                }
                cur.clear();
                stmts.push(Stmt::Close(line));
            }
            ';' if inner_depth == 0 => {
                stmts.push(Stmt::Text(cur.trim().to_string(), start_line));
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        stmts.push(Stmt::Text(cur.trim().to_string(), start_line));
    }
    stmts
}

/// Splits on commas that are not inside brackets or braces.
fn split_operands(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in text.chars() {
        match c {
            '[' | '{' | '(' => {
                depth += 1;
                cur.push(c)
            }
            ']' | '}' | ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => {
                parts.push(cur.trim().to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    parts
}

/// Parses a PTX integer or float immediate into raw bits.
pub(crate) fn parse_immediate(tok: &str) -> Option<u64> {
    let t = tok.trim();
    if let Some(hex) = t.strip_prefix("0f").or_else(|| t.strip_prefix("0F")) {
        return u32::from_str_radix(hex, 16).ok().map(u64::from);
    }
    if let Some(hex) = t.strip_prefix("0d").or_else(|| t.strip_prefix("0D")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let body = body.trim_end_matches(['U', 'u']);
    let value = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = body.strip_prefix("0b") {
        u64::from_str_radix(bin, 2).ok()?
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        u64::from_str_radix(&body[1..], 8).ok()?
    } else if body.bytes().all(|b| b.is_ascii_digit()) && !body.is_empty() {
        body.parse::<u64>().ok()?
    } else if body.contains('.') || body.contains('e') {
        // Decimal float literals are not emitted by NVRTC but are legal in hand-written PTX.
        let f: f64 = body.parse().ok()?;
        return Some((if neg { -f } else { f }).to_bits());
    } else {
        return None;
    };
    Some(if neg { value.wrapping_neg() } else { value })
}

#[derive(Debug, Clone, Copy)]
enum Sym {
    Param(usize),
    Shared(usize),
    Local(usize),
    Global(u64),
    Label(u32),
}

/// Declaration of a variable: `[.align N] .type name[size] [= {...}]`.
struct VarDecl {
    name: String,
    align: usize,
    size: usize,
    init: Vec<u8>,
    is_extern: bool,
}

fn parse_var_decl(text: &str) -> Option<VarDecl> {
    let (decl, init) = match text.split_once('=') {
        Some((d, i)) => (d.trim(), Some(i.trim())),
        None => (text.trim(), None),
    };
    let tokens: Vec<&str> = decl.split_whitespace().collect();
    let mut align = 0usize;
    let mut elem: Option<Ty> = None;
    let mut is_extern = false;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        if t == ".align" {
            align = tokens.get(i + 1)?.parse().ok()?;
            i += 2;
            continue;
        }
        if t == ".extern" {
            is_extern = true;
        }
        if let Some(ty) = t.strip_prefix('.').and_then(Ty::parse) {
            elem = Some(ty);
        }
        i += 1;
    }
    let elem = elem?;
    let last = *tokens.last()?;
    let (name, count) = match last.split_once('[') {
        Some((n, rest)) => {
            let inner = rest.trim_end_matches(']');
            let count = if inner.is_empty() {
                0
            } else {
                parse_immediate(inner)? as usize
            };
            (n.to_string(), count)
        }
        None => (last.to_string(), 1),
    };
    let elem_bytes = elem.bytes().max(1);
    let mut bytes = Vec::new();
    if let Some(init) = init {
        let inner = init.trim_start_matches('{').trim_end_matches('}');
        for item in inner.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let mut v = parse_immediate(item)?;
            if elem == Ty::F32 && item.contains('.') {
                v = u64::from((f64::from_bits(v) as f32).to_bits());
            }
            bytes.extend_from_slice(&v.to_le_bytes()[..elem_bytes]);
        }
    }
    let align = if align == 0 { elem_bytes } else { align };
    let size = count.checked_mul(elem_bytes)?;
    Some(VarDecl {
        name,
        align,
        size,
        init: bytes,
        is_extern,
    })
}

fn align_up(x: usize, a: usize) -> usize {
    let a = a.max(1);
    x.div_ceil(a) * a
}

/// Where module-level `.global`/`.const` variables live: the loader places them in device memory.
pub trait GlobalPlacer {
    fn place(&mut self, var: &GlobalVar) -> Result<u64>;
}

struct FunctionText {
    header: String,
    header_line: u32,
    body: Vec<Stmt>,
}

/// Parses a whole module. `name` labels error messages; `placer` gives module variables addresses.
pub fn parse_module(text: &str, name: &str, placer: &mut dyn GlobalPlacer) -> Result<Module> {
    let mut target = String::new();
    // These directives end at the end of their line, not with `;`: take them out before splitting.
    let mut clean = String::with_capacity(text.len());
    for line in strip_comments(text).lines() {
        let t = line.trim_start();
        let first = t.split_whitespace().next().unwrap_or("");
        if matches!(
            first,
            ".version" | ".target" | ".address_size" | ".file" | ".loc" | ".section"
        ) {
            if first == ".target" {
                target = t[".target".len()..].trim().to_string();
            }
        } else {
            clean.push_str(line);
        }
        clean.push('\n');
    }
    let stmts = split_statements(&clean);
    let mut globals = Vec::new();
    let mut module_syms: HashMap<String, Sym> = HashMap::new();
    let mut module_shared_bytes = 0usize;
    let mut module_extern_shared: Option<(String, usize)> = None;
    let mut functions: Vec<FunctionText> = Vec::new();

    let mut iter = stmts.into_iter().peekable();
    while let Some(stmt) = iter.next() {
        match stmt {
            Stmt::Text(t, line) => {
                let first = t.split_whitespace().next().unwrap_or("");
                match first {
                    ".version" | ".address_size" | ".file" | ".loc" | ".pragma" | "" => {}
                    ".target" => target = t[".target".len()..].trim().to_string(),
                    _ => {
                        let is_func_decl = t.contains(".func") || t.contains(".entry");
                        if is_func_decl {
                            continue; // a prototype (e.g. `.extern .func vprintf`)
                        }
                        let var = parse_var_decl(&t).ok_or_else(|| {
                            parse_error(name, line, format!("cannot parse declaration `{t}`"))
                        })?;
                        if t.contains(".shared") {
                            if var.is_extern || var.size == 0 {
                                module_extern_shared = Some((var.name, var.align));
                            } else {
                                let off = align_up(module_shared_bytes, var.align);
                                module_shared_bytes = off + var.size;
                                module_syms.insert(var.name, Sym::Shared(off));
                            }
                        } else if t.contains(".global") || t.contains(".const") {
                            let gv = GlobalVar {
                                name: var.name.clone(),
                                size: var.size,
                                align: var.align,
                                init: var.init,
                            };
                            let addr = placer.place(&gv)?;
                            module_syms.insert(var.name, Sym::Global(addr));
                            globals.push(gv);
                        } else {
                            return Err(parse_error(
                                name,
                                line,
                                format!("unsupported module-level statement `{t}`"),
                            ));
                        }
                    }
                }
            }
            Stmt::Open(header, line) => {
                let mut depth = 1;
                let mut body = Vec::new();
                for s in iter.by_ref() {
                    match &s {
                        Stmt::Open(..) => depth += 1,
                        Stmt::Close(_) => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    body.push(s);
                }
                if depth != 0 {
                    return Err(parse_error(name, line, "unterminated function body"));
                }
                functions.push(FunctionText {
                    header,
                    header_line: line,
                    body,
                });
            }
            Stmt::Close(line) => return Err(parse_error(name, line, "unbalanced `}`")),
        }
    }

    let mut device_functions: HashMap<String, &FunctionText> = HashMap::new();
    for f in functions.iter().filter(|f| !f.header.contains(".entry")) {
        let before_params = match f.header.find(".func") {
            Some(p) => {
                let after = f.header[p + 5..].trim_start();
                // Skip the return list, then the name runs up to the parameter list.
                let after = if after.starts_with('(') {
                    &after[after.find(')').map_or(0, |c| c + 1)..]
                } else {
                    after
                };
                after.split('(').next().unwrap_or("").trim().to_string()
            }
            None => continue,
        };
        device_functions.insert(before_params, f);
    }
    let mut kernels = Vec::new();
    for f in functions.iter().filter(|f| f.header.contains(".entry")) {
        let kernel = decode_kernel(
            f,
            name,
            &device_functions,
            &module_syms,
            module_shared_bytes,
            &module_extern_shared,
        )?;
        kernels.push(kernel);
    }
    let kernel_index = kernels
        .iter()
        .enumerate()
        .map(|(i, k)| (k.name.clone(), i))
        .collect();
    Ok(Module {
        target,
        kernels,
        kernel_index,
        globals,
    })
}

fn parse_header(
    f: &FunctionText,
    module: &str,
) -> Result<(String, Vec<Param>, usize, Option<u32>)> {
    let h = &f.header;
    let open = h
        .find('(')
        .ok_or_else(|| parse_error(module, f.header_line, "entry without parameter list"))?;
    let close = h
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or_else(|| parse_error(module, f.header_line, "entry without `)`"))?;
    let name = h[..open]
        .split_whitespace()
        .last()
        .unwrap_or("")
        .to_string();
    let mut params = Vec::new();
    let mut offset = 0usize;
    for p in split_operands(&h[open + 1..close]) {
        let var = parse_var_decl(&p).ok_or_else(|| {
            parse_error(
                module,
                f.header_line,
                format!("{name}: cannot parse parameter `{p}`"),
            )
        })?;
        let off = align_up(offset, var.align);
        offset = off + var.size;
        params.push(Param {
            name: var.name,
            offset: off,
            size: var.size,
        });
    }
    let mut max_threads = None;
    let tail: Vec<&str> = h[close + 1..].split_whitespace().collect();
    for (i, t) in tail.iter().enumerate() {
        if *t == ".maxntid" || *t == ".reqntid" {
            let dims: String = tail[i + 1..].join("");
            let mut prod = 1u32;
            for d in dims.split(',').take(3) {
                match d
                    .trim()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|s| s.parse::<u32>().ok())
                {
                    Some(v) => prod = prod.saturating_mul(v),
                    None => break,
                }
            }
            max_threads = Some(prod);
        }
    }
    Ok((name, params, offset, max_threads))
}

fn decode_kernel(
    f: &FunctionText,
    module: &str,
    functions: &HashMap<String, &FunctionText>,
    module_syms: &HashMap<String, Sym>,
    module_shared_bytes: usize,
    module_extern_shared: &Option<(String, usize)>,
) -> Result<Kernel> {
    let (kname, params, param_bytes, max_threads) = parse_header(f, module)?;
    let mut kernel_scope = Scope {
        prefix: String::new(),
        syms: HashMap::new(),
    };
    for p in &params {
        kernel_scope
            .syms
            .insert(p.name.clone(), Sym::Param(p.offset));
    }
    let mut ex = Expander {
        module,
        kernel: &kname,
        functions,
        regs: HashMap::new(),
        scopes: vec![kernel_scope],
        pending: Vec::new(),
        shared_bytes: module_shared_bytes,
        local_bytes: 0,
        extern_shared: module_extern_shared.clone(),
        inline_count: 0,
    };
    ex.expand_body(&f.body, 0, 0)?;
    let dynamic_shared_align = ex
        .extern_shared
        .as_ref()
        .map(|(_, a)| *a)
        .unwrap_or(16)
        .max(1);
    let mut module_syms = module_syms.clone();
    if let Some((n, align)) = &ex.extern_shared {
        module_syms.insert(n.clone(), Sym::Shared(align_up(ex.shared_bytes, *align)));
    }
    let mut code = Vec::with_capacity(ex.pending.len() + 1);
    for p in &ex.pending {
        let scope = &ex.scopes[p.scope];
        let ctx = DecodeCtx {
            regs: &ex.regs,
            prefix: &scope.prefix,
            syms: &scope.syms,
            module_syms: &module_syms,
        };
        let instr = decode_instr(&p.text, p.line, &ctx)
            .map_err(|m| parse_error(module, p.line, format!("kernel `{kname}`: {m}")))?;
        code.push(instr);
    }
    // Falling off the end of the body exits.
    code.push(exit_instr(f.header_line));
    let reg_count = ex.regs.len().max(1);
    let (shared_bytes, local_bytes) = (ex.shared_bytes, ex.local_bytes);
    drop(ex);
    Ok(Kernel {
        name: kname,
        params,
        param_bytes,
        code,
        reg_count,
        static_shared_bytes: shared_bytes,
        dynamic_shared_align,
        local_bytes,
        max_threads,
    })
}

/// Names visible in one function body: the kernel's, or one inlined copy of a device function.
struct Scope {
    /// Prepended to register names so each inlined copy has its own registers.
    prefix: String,
    syms: HashMap<String, Sym>,
}

struct Pending {
    text: String,
    line: u32,
    scope: usize,
}

/// Calls deeper than this are taken for recursion, which inlining cannot express.
const MAX_INLINE_DEPTH: usize = 16;
/// The label each inlined copy's `ret` jumps to.
const RETURN_LABEL: &str = "$__hepar_return";

/// Collects a kernel's instructions, inlining device-function calls: the callee's registers are
/// renamed per call site, call parameters live in the thread's local memory, and `ret` becomes a
/// branch to the end of the copy.
struct Expander<'a> {
    module: &'a str,
    kernel: &'a str,
    functions: &'a HashMap<String, &'a FunctionText>,
    regs: HashMap<String, u32>,
    scopes: Vec<Scope>,
    pending: Vec<Pending>,
    shared_bytes: usize,
    local_bytes: usize,
    extern_shared: Option<(String, usize)>,
    inline_count: usize,
}

impl Expander<'_> {
    fn err(&self, line: u32, msg: String) -> HeparError {
        parse_error(
            self.module,
            line,
            format!("kernel `{}`: {msg}", self.kernel),
        )
    }

    fn alloc_local(&mut self, size: usize, align: usize) -> usize {
        let off = align_up(self.local_bytes, align);
        self.local_bytes = off + size;
        off
    }

    fn expand_body(&mut self, body: &[Stmt], scope: usize, depth: usize) -> Result<()> {
        // Call-site `.param` names are reused by every call sequence of a body: give each name one
        // slot, sized for its largest declaration, so all references agree.
        let mut param_slots: HashMap<String, (usize, usize)> = HashMap::new();
        for stmt in body {
            if let Stmt::Text(t, line) = stmt {
                if t.trim_start().starts_with(".param") {
                    let var = parse_var_decl(t).ok_or_else(|| {
                        self.err(*line, format!("cannot parse declaration `{t}`"))
                    })?;
                    let slot = param_slots.entry(var.name).or_insert((0, 1));
                    slot.0 = slot.0.max(var.size);
                    slot.1 = slot.1.max(var.align);
                }
            }
        }
        for (name, (size, align)) in param_slots {
            let off = self.alloc_local(size, align);
            self.scopes[scope].syms.insert(name, Sym::Local(off));
        }
        for stmt in body {
            let (text, line) = match stmt {
                Stmt::Text(t, l) => (t.as_str(), *l),
                _ => continue, // inner scopes only limit name visibility; names are unique enough here
            };
            let mut rest = text.trim();
            // Peel labels.
            while let Some(colon) = rest.find(':') {
                let head = &rest[..colon];
                let is_label = !head.is_empty()
                    && head
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.')
                    && !head.starts_with('.')
                    && rest.as_bytes().get(colon + 1) != Some(&b':');
                if !is_label {
                    break;
                }
                let at = self.pending.len() as u32;
                self.scopes[scope]
                    .syms
                    .insert(head.to_string(), Sym::Label(at));
                rest = rest[colon + 1..].trim();
            }
            if rest.is_empty() {
                continue;
            }
            let first = rest.split_whitespace().next().unwrap_or("");
            let opcode = if first.starts_with('@') {
                rest.split_whitespace().nth(1).unwrap_or("")
            } else {
                first
            };
            // `.reg.b32 x` (no space) is legal too.
            let first = if first.starts_with(".reg.") {
                ".reg"
            } else {
                first
            };
            match first {
                ".reg" => {
                    let after = rest[4..].trim();
                    let (_ty, names) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
                    let prefix = self.scopes[scope].prefix.clone();
                    for n in names.split(',') {
                        let n = n.trim();
                        if let Some((base, count)) = n.split_once('<') {
                            let count: usize =
                                count.trim_end_matches('>').parse().map_err(|_| {
                                    self.err(line, format!("bad register declaration `{n}`"))
                                })?;
                            for i in 0..count {
                                let next = self.regs.len() as u32;
                                self.regs
                                    .entry(format!("{prefix}{base}{i}"))
                                    .or_insert(next);
                            }
                        } else if !n.is_empty() {
                            let next = self.regs.len() as u32;
                            self.regs.entry(format!("{prefix}{n}")).or_insert(next);
                        }
                    }
                }
                ".param" => {} // placed above
                ".shared" | ".local" | ".extern" | ".global" | ".const" => {
                    let var = parse_var_decl(rest).ok_or_else(|| {
                        self.err(line, format!("cannot parse declaration `{rest}`"))
                    })?;
                    if rest.contains(".shared") {
                        if var.is_extern || var.size == 0 {
                            self.extern_shared = Some((var.name, var.align));
                        } else {
                            let off = align_up(self.shared_bytes, var.align);
                            self.shared_bytes = off + var.size;
                            self.scopes[scope].syms.insert(var.name, Sym::Shared(off));
                        }
                    } else if rest.contains(".local") {
                        let off = self.alloc_local(var.size, var.align);
                        self.scopes[scope].syms.insert(var.name, Sym::Local(off));
                    } else {
                        return Err(self.err(
                            line,
                            format!(
                                "function-scope `{first}` variables are not supported: `{rest}`"
                            ),
                        ));
                    }
                }
                ".pragma" | ".loc" | ".file" | ".maxnreg" => {}
                _ if opcode == "call" || opcode.starts_with("call.") => {
                    self.expand_call(rest, line, scope, depth)?
                }
                _ if scope != 0 && (opcode == "ret" || opcode.starts_with("ret.")) => {
                    let guard = if first.starts_with('@') { first } else { "" };
                    self.pending.push(Pending {
                        text: format!("{guard} bra.uni {RETURN_LABEL}"),
                        line,
                        scope,
                    });
                }
                _ => self.pending.push(Pending {
                    text: rest.to_string(),
                    line,
                    scope,
                }),
            }
        }
        Ok(())
    }

    fn expand_call(&mut self, text: &str, line: u32, scope: usize, depth: usize) -> Result<()> {
        if text.starts_with('@') {
            return Err(self.err(line, format!("guarded calls are not supported: `{text}`")));
        }
        let operand_text = text
            .split_once(char::is_whitespace)
            .map(|(_, r)| r.trim())
            .unwrap_or("");
        let mut ops = split_operands(operand_text).into_iter();
        let mut rets = Vec::new();
        let mut callee = ops.next().unwrap_or_default();
        if callee.starts_with('(') {
            rets = split_operands(callee.trim_matches(|c| c == '(' || c == ')'));
            callee = ops.next().unwrap_or_default();
        }
        let args = match ops.next() {
            Some(a) => split_operands(a.trim_matches(|c| c == '(' || c == ')')),
            None => Vec::new(),
        };
        match callee.as_str() {
            // Device printf: an instruction of the VM's own that formats into the launch report.
            "vprintf" if args.len() == 2 => {
                let text = format!("hepar_printf [{}], [{}]", args[0].trim(), args[1].trim());
                self.pending.push(Pending { text, line, scope });
                return Ok(());
            }
            // A failed device-side assert().
            "__assertfail" => {
                self.pending.push(Pending {
                    text: "trap".to_string(),
                    line,
                    scope,
                });
                return Ok(());
            }
            _ => {}
        }
        let Some(f) = self.functions.get(callee.as_str()).copied() else {
            return Err(self.err(
                line,
                format!("call of `{callee}`, which has no body in this module, is not supported"),
            ));
        };
        if depth >= MAX_INLINE_DEPTH {
            return Err(self.err(
                line,
                format!("call depth of `{callee}` exceeds {MAX_INLINE_DEPTH} (recursion is not supported)"),
            ));
        }
        let (ret_names, param_names) = parse_func_header(&f.header).ok_or_else(|| {
            self.err(
                f.header_line,
                format!("cannot parse device function header of `{callee}`"),
            )
        })?;
        if ret_names.len() != rets.len() || param_names.len() != args.len() {
            return Err(self.err(
                line,
                format!("call of `{callee}` does not match its parameter list"),
            ));
        }
        self.inline_count += 1;
        let mut syms = HashMap::new();
        for (formal, actual) in ret_names
            .iter()
            .zip(&rets)
            .chain(param_names.iter().zip(&args))
        {
            let slot = self.scopes[scope].syms.get(actual.trim()).copied();
            match slot {
                Some(s @ Sym::Local(_)) => {
                    syms.insert(formal.clone(), s);
                }
                _ => {
                    return Err(self.err(
                        line,
                        format!("call argument `{actual}` is not a declared .param"),
                    ))
                }
            }
        }
        let prefix = format!(
            "{}{callee}#{}::",
            self.scopes[scope].prefix, self.inline_count
        );
        self.scopes.push(Scope { prefix, syms });
        let callee_scope = self.scopes.len() - 1;
        self.expand_body(&f.body, callee_scope, depth + 1)?;
        let end = self.pending.len() as u32;
        self.scopes[callee_scope]
            .syms
            .insert(RETURN_LABEL.to_string(), Sym::Label(end));
        Ok(())
    }
}

/// Return and parameter names of `.func (.param .b32 ret) name(.param .b32 a, ...)`.
fn parse_func_header(h: &str) -> Option<(Vec<String>, Vec<String>)> {
    let after = &h[h.find(".func")? + 5..];
    let after = after.trim_start();
    let names_of = |list: &str| -> Option<Vec<String>> {
        split_operands(list)
            .iter()
            .map(|p| parse_var_decl(p).map(|v| v.name))
            .collect()
    };
    let (rets, rest) = if let Some(r) = after.strip_prefix('(') {
        let close = r.find(')')?;
        (names_of(&r[..close])?, &r[close + 1..])
    } else {
        (Vec::new(), after)
    };
    let params = match (rest.find('('), rest.rfind(')')) {
        (Some(o), Some(c)) if c > o => names_of(&rest[o + 1..c])?,
        _ => Vec::new(),
    };
    Some((rets, params))
}

fn exit_instr(line: u32) -> Instr {
    Instr {
        guard: None,
        op: Op::Exit,
        ty: Ty::B32,
        rnd: Rnd::Default,
        ftz: false,
        sat: false,
        vec: 1,
        dst: Operand::Sink,
        dst_pred: None,
        src: Vec::new(),
        class: InstrClass::Control,
        flops: 0,
        line,
        text: "exit".to_string(),
    }
}

struct DecodeCtx<'a> {
    regs: &'a HashMap<String, u32>,
    /// Register-name prefix of the current (possibly inlined) function body.
    prefix: &'a str,
    syms: &'a HashMap<String, Sym>,
    module_syms: &'a HashMap<String, Sym>,
}

impl DecodeCtx<'_> {
    fn lookup_reg(&self, name: &str) -> Option<u32> {
        if self.prefix.is_empty() {
            self.regs.get(name).copied()
        } else {
            self.regs.get(&format!("{}{name}", self.prefix)).copied()
        }
    }

    fn reg(&self, name: &str) -> std::result::Result<u32, String> {
        self.lookup_reg(name)
            .ok_or_else(|| format!("undeclared register `{name}`"))
    }

    fn symbol(&self, name: &str) -> Option<Sym> {
        self.syms
            .get(name)
            .or_else(|| self.module_syms.get(name))
            .copied()
    }

    /// Whether an address like `[param0+4]` names per-thread memory (a call parameter).
    fn address_is_local(&self, tok: &str) -> bool {
        let inner = tok.trim().trim_start_matches('[').trim_end_matches(']');
        let base = inner.split('+').next().unwrap_or("").trim();
        matches!(self.symbol(base), Some(Sym::Local(_)))
    }

    fn symbol_value(&self, name: &str) -> Option<u64> {
        match self.symbol(name)? {
            Sym::Param(o) | Sym::Shared(o) | Sym::Local(o) => Some(o as u64),
            Sym::Global(a) => Some(a),
            Sym::Label(i) => Some(u64::from(i)),
        }
    }

    fn operand(&self, tok: &str) -> std::result::Result<Operand, String> {
        let t = tok.trim();
        if t == "_" {
            return Ok(Operand::Sink);
        }
        if let Some(inner) = t.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| format!("bad address `{t}`"))?
                .trim();
            return self.address(inner);
        }
        if let Some(inner) = t.strip_prefix('{') {
            let inner = inner
                .strip_suffix('}')
                .ok_or_else(|| format!("bad vector `{t}`"))?;
            let mut elems = Vec::new();
            for e in split_operands(inner) {
                let op = self.operand(&e)?;
                elems.push(if op == Operand::Sink {
                    None
                } else {
                    Some(Box::new(op))
                });
            }
            return Ok(Operand::Vector(elems));
        }
        if let Some(p) = t.strip_prefix('!') {
            return Ok(Operand::NotPred(self.reg(p.trim())?));
        }
        if let Some(r) = self.lookup_reg(t) {
            return Ok(Operand::Reg(r));
        }
        if t.starts_with('%') {
            if let Some(s) = Special::parse(t) {
                return Ok(Operand::Special(s));
            }
            return Err(format!("undeclared register `{t}`"));
        }
        if let Some(v) = parse_immediate(t) {
            return Ok(Operand::Imm(v));
        }
        if let Some(Sym::Label(i)) = self.symbol(t) {
            return Ok(Operand::Target(i));
        }
        if let Some(v) = self.symbol_value(t) {
            return Ok(Operand::Imm(v));
        }
        if let Some((base, off)) = t.split_once('+') {
            if let (Some(b), Some(o)) =
                (self.symbol_value(base.trim()), parse_immediate(off.trim()))
            {
                return Ok(Operand::Imm(b.wrapping_add(o)));
            }
        }
        Err(format!("unknown operand `{t}`"))
    }

    fn address(&self, inner: &str) -> std::result::Result<Operand, String> {
        let (base_tok, off_tok) = match inner.find('+') {
            Some(p) => (inner[..p].trim(), Some(inner[p + 1..].trim())),
            None => (inner, None),
        };
        let mut offset: i64 = match off_tok {
            Some(o) => {
                parse_immediate(o).ok_or_else(|| format!("bad address offset `{o}`"))? as i64
            }
            None => 0,
        };
        let base = if let Some(r) = self.lookup_reg(base_tok) {
            Some(r)
        } else if let Some(v) = self.symbol_value(base_tok) {
            offset = offset.wrapping_add(v as i64);
            None
        } else if let Some(v) = parse_immediate(base_tok) {
            offset = offset.wrapping_add(v as i64);
            None
        } else {
            return Err(format!("unknown address base `{base_tok}`"));
        };
        Ok(Operand::Addr { base, offset })
    }
}

fn parse_space(m: &str) -> Option<Space> {
    Some(match m {
        "global" => Space::Global,
        "shared" | "shared::cta" | "shared::cluster" => Space::Shared,
        "local" => Space::Local,
        "param" | "param::entry" | "param::func" => Space::Param,
        "const" => Space::Const,
        _ => return None,
    })
}

fn parse_cmp(m: &str) -> Option<Cmp> {
    Some(match m {
        "eq" => Cmp::Eq,
        "ne" => Cmp::Ne,
        "lt" => Cmp::Lt,
        "le" => Cmp::Le,
        "gt" => Cmp::Gt,
        "ge" => Cmp::Ge,
        "lo" => Cmp::Lo,
        "ls" => Cmp::Ls,
        "hi" => Cmp::Hi,
        "hs" => Cmp::Hs,
        "equ" => Cmp::Equ,
        "neu" => Cmp::Neu,
        "ltu" => Cmp::Ltu,
        "leu" => Cmp::Leu,
        "gtu" => Cmp::Gtu,
        "geu" => Cmp::Geu,
        "num" => Cmp::Num,
        "nan" => Cmp::Nan,
        _ => return None,
    })
}

/// `ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}{.shared{::cta}}.b16`.
fn decode_ldmatrix(
    opcode: &str,
    mods: &[&str],
    space: Option<Space>,
) -> std::result::Result<Op, String> {
    let matrices = match mods.iter().find(|m| matches!(**m, "x1" | "x2" | "x4")) {
        Some(&"x1") => 1,
        Some(&"x2") => 2,
        Some(_) => 4,
        None => 0,
    };
    let known = |m: &&str| {
        matches!(
            *m,
            "sync" | "aligned" | "m8n8" | "x1" | "x2" | "x4" | "trans" | "b16"
        ) || parse_space(m) == Some(Space::Shared)
    };
    let required = ["sync", "aligned", "m8n8", "b16"];
    if matrices == 0 || !mods.iter().all(known) || !required.iter().all(|r| mods.contains(r)) {
        return Err(format!(
            "unsupported PTX instruction `{opcode}` (the VM executes ldmatrix.sync.aligned.m8n8.x1/x2/x4{{.trans}}.shared.b16)"
        ));
    }
    Ok(Op::Ldmatrix {
        space: space.unwrap_or(Space::Generic),
        matrices,
        trans: mods.contains(&"trans"),
    })
}

/// Tensor-core instructions take register vectors of fixed lengths: anything else is an error
/// at load time rather than a silently wrong fragment.
fn check_fragment_operands(
    op: &Op,
    dst: &Operand,
    src: &[Operand],
    text: &str,
) -> std::result::Result<(), String> {
    let vector_len = |o: &Operand| match o {
        Operand::Vector(v) if v.iter().all(Option::is_some) => Some(v.len()),
        Operand::Reg(_) => Some(1),
        _ => None,
    };
    let expected: Vec<(&Operand, usize)> = match op {
        Op::Mma(_) if src.len() == 3 => {
            let [d, a, b, c] = MMA_FRAGMENT_REGISTERS;
            vec![(dst, d), (&src[0], a), (&src[1], b), (&src[2], c)]
        }
        Op::Mma(_) => return Err(format!("mma needs operands d, a, b, c: `{text}`")),
        Op::Ldmatrix { matrices, .. } => vec![(dst, usize::from(*matrices))],
        _ => return Ok(()),
    };
    for (operand, len) in expected {
        if vector_len(operand) != Some(len) {
            return Err(format!(
                "operand `{operand:?}` should be a vector of {len} registers: `{text}`"
            ));
        }
    }
    Ok(())
}

fn parse_atom_op(m: &str) -> Option<AtomOp> {
    Some(match m {
        "add" => AtomOp::Add,
        "min" => AtomOp::Min,
        "max" => AtomOp::Max,
        "inc" => AtomOp::Inc,
        "dec" => AtomOp::Dec,
        "and" => AtomOp::And,
        "or" => AtomOp::Or,
        "xor" => AtomOp::Xor,
        "exch" => AtomOp::Exch,
        "cas" => AtomOp::Cas,
        _ => return None,
    })
}

fn decode_instr(text: &str, line: u32, ctx: &DecodeCtx) -> std::result::Result<Instr, String> {
    let mut rest = text.trim();
    let mut guard = None;
    if let Some(g) = rest.strip_prefix('@') {
        let (p, r) = g
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("bad guard in `{text}`"))?;
        guard = Some(match p.strip_prefix('!') {
            Some(p) => (ctx.reg(p)?, true),
            None => (ctx.reg(p)?, false),
        });
        rest = r.trim();
    }
    let (opcode, operand_text) = match rest.find(char::is_whitespace) {
        Some(p) => (&rest[..p], rest[p..].trim()),
        None => (rest, ""),
    };
    let mut parts = opcode.split('.');
    let base = parts.next().unwrap_or("");
    let mods: Vec<&str> = parts.collect();
    let types: Vec<Ty> = mods.iter().filter_map(|m| Ty::parse(m)).collect();
    let has = |m: &str| mods.contains(&m);
    let space = mods.iter().find_map(|m| parse_space(m));
    let rnd = if has("rn") {
        Rnd::Rn
    } else if has("rz") {
        Rnd::Rz
    } else if has("rm") {
        Rnd::Rm
    } else if has("rp") {
        Rnd::Rp
    } else if has("rni") {
        Rnd::Rni
    } else if has("rzi") {
        Rnd::Rzi
    } else if has("rmi") {
        Rnd::Rmi
    } else if has("rpi") {
        Rnd::Rpi
    } else {
        Rnd::Default
    };
    let vec = if has("v2") {
        2
    } else if has("v4") {
        4
    } else if has("v8") {
        8
    } else {
        1
    };
    let ty = types.first().copied().unwrap_or(Ty::B32);
    let unknown = || format!("unsupported PTX instruction `{opcode}`");
    let mul_mode = if has("wide") {
        MulMode::Wide
    } else if has("hi") {
        MulMode::Hi
    } else {
        MulMode::Lo
    };
    // Call parameters are kept in local memory (see `Expander`).
    let first_operand = split_operands(operand_text);
    let param_is_local = |i: usize| {
        space == Some(Space::Param)
            && first_operand
                .get(i)
                .is_some_and(|t| ctx.address_is_local(t))
    };
    // Modifiers that change results and are not modelled: better an error than a wrong answer.
    if let Some(m) = mods
        .iter()
        .find(|m| matches!(**m, "relu" | "xorsign" | "NaN" | "oob" | "cc"))
    {
        return Err(format!(
            "unsupported PTX instruction `{opcode}` (modifier `.{m}`)"
        ));
    }
    let op = match base {
        "mov" => Op::Mov,
        "ld" | "ldu" if param_is_local(1) => Op::Ld {
            space: Space::Local,
        },
        "st" if param_is_local(0) => Op::St {
            space: Space::Local,
        },
        "ld" | "ldu" => Op::Ld {
            space: space.unwrap_or(Space::Generic),
        },
        "st" => Op::St {
            space: space.unwrap_or(Space::Generic),
        },
        "cvta" => Op::Cvta {
            to_generic: !has("to"),
            space: space.ok_or_else(unknown)?,
        },
        "add" if !has("cc") => Op::Add,
        "sub" if !has("cc") => Op::Sub,
        "mul" => Op::Mul(mul_mode),
        "mad" if !has("cc") => Op::Mad(mul_mode),
        "fma" => Op::Fma,
        "div" => Op::Div,
        "rem" => Op::Rem,
        "abs" => Op::Abs,
        "neg" => Op::Neg,
        "min" if !has("NaN") && !has("xorsign") => Op::Min,
        "max" if !has("NaN") && !has("xorsign") => Op::Max,
        "and" => Op::And,
        "or" => Op::Or,
        "xor" => Op::Xor,
        "not" => Op::Not,
        "cnot" => Op::CNot,
        "shl" => Op::Shl,
        "shr" => Op::Shr,
        "popc" => Op::Popc,
        "clz" => Op::Clz,
        "brev" => Op::Brev,
        "bfind" => Op::Bfind {
            shift_amount: has("shiftamt"),
        },
        "bfe" => Op::Bfe,
        "bfi" => Op::Bfi,
        "prmt" if mods.len() == 1 => Op::Prmt,
        "shf" => Op::Shf {
            left: has("l"),
            wrap: has("wrap"),
        },
        "lop3" => Op::Lop3,
        "setp" | "set" => {
            let cmp = mods.iter().find_map(|m| parse_cmp(m)).ok_or_else(unknown)?;
            let bool_op = if has("and") {
                Some(BoolOp::And)
            } else if has("or") {
                Some(BoolOp::Or)
            } else if has("xor") {
                Some(BoolOp::Xor)
            } else {
                None
            };
            if base == "setp" {
                Op::Setp { cmp, bool_op }
            } else {
                let src_ty = *types.get(1).ok_or_else(unknown)?;
                Op::Set {
                    cmp,
                    bool_op,
                    src_ty,
                }
            }
        }
        "selp" => Op::Selp,
        "cvt" if mods.contains(&"tf32") => {
            if has("rna") && !has("satfinite") && mods.len() == 3 {
                Op::CvtTf32
            } else {
                return Err(format!(
                    "unsupported PTX instruction `{opcode}` (the VM rounds to TF32 only with `cvt.rna.tf32.f32`)"
                ));
            }
        }
        "cvt" => {
            let src_ty = *types.get(1).ok_or_else(unknown)?;
            Op::Cvt { src_ty }
        }
        "rcp" => Op::Rcp,
        "sqrt" => Op::Sqrt,
        "rsqrt" => Op::Rsqrt,
        "ex2" => Op::Ex2,
        "lg2" => Op::Lg2,
        "sin" => Op::Sin,
        "cos" => Op::Cos,
        "tanh" => Op::Tanh,
        "copysign" => Op::Copysign,
        "testp" => Op::Testp(if has("finite") {
            TestKind::Finite
        } else if has("infinite") {
            TestKind::Infinite
        } else if has("number") {
            TestKind::Number
        } else if has("notanumber") {
            TestKind::NotANumber
        } else if has("normal") {
            TestKind::Normal
        } else if has("subnormal") {
            TestKind::Subnormal
        } else {
            return Err(unknown());
        }),
        "bra" => Op::Bra,
        "ret" | "exit" => Op::Exit,
        "bar" | "barrier" if has("warp") => Op::BarWarp,
        "bar" | "barrier" if has("sync") || has("cta") || mods.is_empty() => Op::Bar,
        "shfl" if has("sync") => Op::Shfl(if has("up") {
            ShflMode::Up
        } else if has("down") {
            ShflMode::Down
        } else if has("bfly") {
            ShflMode::Bfly
        } else if has("idx") {
            ShflMode::Idx
        } else {
            return Err(unknown());
        }),
        "vote" if has("sync") => Op::Vote(if has("all") {
            VoteMode::All
        } else if has("any") {
            VoteMode::Any
        } else if has("uni") {
            VoteMode::Uni
        } else if has("ballot") {
            VoteMode::Ballot
        } else {
            return Err(unknown());
        }),
        "match" if has("any") => Op::MatchAny,
        "match" if has("all") => Op::MatchAll,
        "activemask" => Op::Activemask,
        "redux" => Op::Redux(
            mods.iter()
                .find_map(|m| parse_atom_op(m))
                .ok_or_else(unknown)?,
        ),
        "atom" | "red" => {
            let aop = mods
                .iter()
                .find_map(|m| parse_atom_op(m))
                .ok_or_else(unknown)?;
            let space = space.unwrap_or(Space::Generic);
            if base == "atom" {
                Op::Atom { space, op: aop }
            } else {
                Op::Red { space, op: aop }
            }
        }
        "mma" => Op::Mma(MmaKind::from_opcode(opcode).ok_or_else(|| {
            format!(
                "unsupported PTX instruction `{opcode}` (the VM executes mma.sync.aligned .row.col with f32 \
                 accumulators: m16n8k8 .tf32 and m16n8k16 .f16/.bf16)"
            )
        })?),
        "ldmatrix" => decode_ldmatrix(opcode, &mods, space)?,
        "hepar_printf" => Op::Printf,
        "cp" if has("async") && (has("commit_group") || has("wait_group") || has("wait_all")) => {
            Op::Nop
        }
        "cp" if has("async") && (has("ca") || has("cg")) => Op::CpAsync,
        "membar" | "fence" | "prefetch" | "prefetchu" | "nanosleep" | "pmevent" | "brkpt" => {
            Op::Nop
        }
        "trap" => Op::Trap,
        _ => return Err(unknown()),
    };
    if matches!(op, Op::Mov | Op::Ld { .. } | Op::St { .. } | Op::Cvt { .. }) && types.is_empty() {
        return Err(format!("`{opcode}` without a type"));
    }

    let ops = split_operands(operand_text);
    let mut dst = Operand::Sink;
    let mut dst_pred = None;
    let mut src = Vec::new();
    let has_dst = !matches!(
        op,
        Op::St { .. }
            | Op::Red { .. }
            | Op::Bra
            | Op::Exit
            | Op::Bar
            | Op::BarWarp
            | Op::Nop
            | Op::Trap
            | Op::CpAsync
            | Op::Printf
    );
    for (i, o) in ops.iter().enumerate() {
        if i == 0 && has_dst {
            if let Some((d, p)) = o.split_once('|') {
                dst = ctx.operand(d)?;
                dst_pred = Some(ctx.reg(p.trim())?);
            } else {
                dst = ctx.operand(o)?;
            }
        } else if i == 0 && matches!(op, Op::St { .. } | Op::Red { .. } | Op::CpAsync) {
            dst = ctx.operand(o)?;
        } else {
            src.push(ctx.operand(o)?);
        }
    }
    let needed = match &op {
        Op::Exit | Op::Bar | Op::BarWarp | Op::Nop | Op::Trap | Op::Activemask => 0,
        Op::Add
        | Op::Sub
        | Op::Mul(_)
        | Op::Div
        | Op::Rem
        | Op::Min
        | Op::Max
        | Op::And
        | Op::Or
        | Op::Xor
        | Op::Shl
        | Op::Shr
        | Op::Copysign
        | Op::Setp { .. }
        | Op::Set { .. }
        | Op::CpAsync
        | Op::Printf => 2,
        Op::Mad(_) | Op::Fma | Op::Selp | Op::Bfe | Op::Prmt | Op::Shf { .. } | Op::Shfl(_) => 3,
        Op::Bfi | Op::Lop3 => 4,
        Op::Atom {
            op: AtomOp::Cas, ..
        } => 3,
        Op::Atom { .. } => 2,
        Op::Cvt { .. } if matches!(ty, Ty::F16x2 | Ty::BF16x2) => 2,
        _ => 1,
    };
    if src.len() < needed {
        return Err(format!(
            "`{opcode}` needs {needed} source operands, got {}: `{text}`",
            src.len()
        ));
    }
    if has_dst
        && needed > 0
        && !matches!(op, Op::Bra)
        && dst == Operand::Sink
        && dst_pred.is_none()
        && !matches!(op, Op::Atom { .. })
    {
        return Err(format!("`{opcode}` without a destination: `{text}`"));
    }
    if types.iter().any(|t| t.bits() > 64) {
        return Err(format!(
            "unsupported PTX instruction `{opcode}` (128-bit types are not supported)"
        ));
    }
    let empty_vector = |o: &Operand| matches!(o, Operand::Vector(v) if v.is_empty());
    if empty_vector(&dst) || src.iter().any(empty_vector) {
        return Err(format!("empty vector operand in `{text}`"));
    }
    check_fragment_operands(&op, &dst, &src, text)?;
    if op == Op::Bra && !matches!(src.first(), Some(Operand::Target(_))) {
        return Err(format!("branch without a resolvable label: `{text}`"));
    }
    let is_f16 = matches!(ty, Ty::F16 | Ty::F16x2 | Ty::BF16 | Ty::BF16x2);
    let class = match &op {
        Op::Ld { .. }
        | Op::St { .. }
        | Op::Atom { .. }
        | Op::Red { .. }
        | Op::CpAsync
        | Op::Ldmatrix { .. } => InstrClass::Memory,
        Op::Mma(MmaKind::Tf32M16n8k8) => InstrClass::Fp32,
        Op::Mma(_) => InstrClass::Fp16,
        Op::Bra | Op::Exit | Op::Bar | Op::BarWarp | Op::Trap | Op::Printf => InstrClass::Control,
        Op::Mov
        | Op::Cvt { .. }
        | Op::CvtTf32
        | Op::Cvta { .. }
        | Op::Nop
        | Op::Shfl(_)
        | Op::Vote(_)
        | Op::Activemask
        | Op::MatchAll
        | Op::MatchAny
        | Op::Selp => InstrClass::Other,
        Op::Rcp | Op::Sqrt | Op::Rsqrt | Op::Ex2 | Op::Lg2 | Op::Sin | Op::Cos | Op::Tanh => {
            InstrClass::Special
        }
        Op::Div if ty.is_float() => InstrClass::Special,
        _ if is_f16 => InstrClass::Fp16,
        _ if ty == Ty::F32 => InstrClass::Fp32,
        _ if ty == Ty::F64 => InstrClass::Fp64,
        _ => InstrClass::Integer,
    };
    let lanes_per_value = if matches!(ty, Ty::F16x2 | Ty::BF16x2) {
        2
    } else {
        1
    };
    // The counters bin FLOPs by `ty`: for mma that is the input type, 2*M*N*K per warp.
    let (ty, flops_per_lane) = match &op {
        Op::Mma(kind) => (kind.input_ty(), Some((2 * 16 * 8 * kind.k() / 32) as u8)),
        _ => (ty, None),
    };
    let flops = if let Some(f) = flops_per_lane {
        f
    } else if ty.is_float() {
        match op {
            Op::Fma | Op::Mad(_) => 2 * lanes_per_value,
            Op::Add | Op::Sub | Op::Mul(_) | Op::Div | Op::Min | Op::Max => lanes_per_value,
            Op::Rcp | Op::Sqrt | Op::Rsqrt | Op::Ex2 | Op::Lg2 | Op::Sin | Op::Cos | Op::Tanh => 1,
            _ => 0,
        }
    } else {
        0
    };
    Ok(Instr {
        guard,
        op,
        ty,
        rnd,
        ftz: has("ftz"),
        sat: has("sat") || has("satfinite"),
        vec,
        dst,
        dst_pred,
        src,
        class,
        flops,
        line,
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoGlobals;
    impl GlobalPlacer for NoGlobals {
        fn place(&mut self, var: &GlobalVar) -> Result<u64> {
            Err(HeparError::invalid(
                "test",
                format!("unexpected global {}", var.name),
            ))
        }
    }

    #[test]
    fn immediates_of_every_form() {
        assert_eq!(parse_immediate("0f3F800000"), Some(0x3f80_0000));
        assert_eq!(
            parse_immediate("0d3FF0000000000000"),
            Some(1.0f64.to_bits())
        );
        assert_eq!(parse_immediate("-1"), Some(u64::MAX));
        assert_eq!(parse_immediate("0x10U"), Some(16));
        assert_eq!(parse_immediate("017"), Some(15));
        assert_eq!(parse_immediate("%r1"), None);
    }

    #[test]
    fn parses_labels_vectors_guards_and_params() {
        let ptx = ".version 8.0\n.target sm_90\n.address_size 64\n\
            .visible .entry k(\n .param .u64 k_param_0,\n .param .align 4 .b8 k_param_1[12]\n)\n.maxntid 128, 1, 1\n{\n\
            .reg .pred %p<2>;\n.reg .b32 %r<5>;\n.reg .b64 %rd<2>;\n.shared .align 16 .b8 tile[64];\n\
            ld.param.u32 %r1, [k_param_1+8];\n$L__BB0_1:\nsetp.lt.u32 %p1, %r1, 4;\n@!%p1 bra $L__BB0_1;\n\
            mov.b64 {%r2, %r3}, %rd1;\nst.shared.v2.u32 [tile+8], {%r2, %r3};\nret;\n}\n";
        let m = parse_module(ptx, "t.ptx", &mut NoGlobals).unwrap();
        assert_eq!(m.target, "sm_90");
        let k = &m.kernels[0];
        assert_eq!(
            (k.params[1].offset, k.params[1].size, k.param_bytes),
            (8, 12, 20)
        );
        assert_eq!((k.static_shared_bytes, k.max_threads), (64, Some(128)));
        assert_eq!(
            k.code[0].src[0],
            Operand::Addr {
                base: None,
                offset: 16
            }
        );
        assert_eq!(
            k.code[2].guard,
            Some((1, true)),
            "%p<2> declares %p0 and %p1"
        );
        assert_eq!(k.code[2].src[0], Operand::Target(1));
        assert!(matches!(k.code[3].dst, Operand::Vector(ref v) if v.len() == 2));
        assert_eq!(k.code[4].vec, 2);
    }
}
