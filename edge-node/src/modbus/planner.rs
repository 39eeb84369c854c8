//! The request planner: coalesces the tags of one device and scan class into the fewest read
//! requests the device's limits allow, and splits a block that a device refuses with
//! "illegal data address" so one wrong tag never blanks its neighbours.

use super::config::RequestLimits;
use super::tag::{Table, Tag, TagId};

/// One read request and the tags decoded from its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub table: Table,
    /// 0-based protocol address of the first register or bit read.
    pub start: u16,
    /// Registers or bits read.
    pub count: u16,
    pub tags: Vec<BlockTag>,
    /// The block's previous answer (bits as 0/1), kept so tags whose registers did not
    /// change are not decoded again; empty until the first answer.
    pub previous: Vec<u16>,
    /// Every tag of the block was last reported Good, decoded from `previous`: an answer
    /// equal to `previous` then holds nothing to decode or report.
    pub all_good: bool,
}

/// Where a tag sits in its block's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTag {
    pub id: TagId,
    /// Offset from the block start, in registers or bits.
    pub offset: u16,
    pub span: u16,
}

impl Block {
    fn for_tags(table: Table, mut tags: Vec<BlockTag>, first: u16) -> Block {
        // Rebase offsets (given relative to `first`) on the block's own start.
        let lo = tags.iter().map(|t| t.offset).min().unwrap_or(0);
        let hi = tags
            .iter()
            .map(|t| u32::from(t.offset) + u32::from(t.span))
            .max()
            .unwrap_or(0);
        for t in &mut tags {
            t.offset -= lo;
        }
        Block {
            table,
            start: first + lo,
            // The tags fitted one request before, so the span fits u16.
            count: (hi - u32::from(lo)) as u16,
            tags,
            previous: Vec::new(),
            all_good: false,
        }
    }

    /// Splits the block into two halves of its tags, or `None` if it holds a single tag.
    pub fn split(&self) -> Option<(Block, Block)> {
        if self.tags.len() < 2 {
            return None;
        }
        let mid = self.tags.len() / 2;
        let (a, b) = self.tags.split_at(mid);
        Some((
            Block::for_tags(self.table, a.to_vec(), self.start),
            Block::for_tags(self.table, b.to_vec(), self.start),
        ))
    }
}

/// Plans the reads of `tags` (all of one device): sorted by table and address, a tag joins
/// the current block while the hole before it is at most `max_gap` and the block stays within
/// the per-request maximum of its table.
pub fn plan<'a>(
    tags: impl IntoIterator<Item = (TagId, &'a Tag)>,
    limits: RequestLimits,
) -> Vec<Block> {
    let mut sorted: Vec<(TagId, &Tag)> = tags.into_iter().collect();
    sorted.sort_by_key(|(id, t)| (t.table, t.address, t.span, *id));
    let mut blocks: Vec<Block> = Vec::new();
    for (id, tag) in sorted {
        let max = u32::from(if tag.table.is_bits() {
            limits.max_bits
        } else {
            limits.max_registers
        });
        if let Some(block) = blocks.last_mut()
            && block.table == tag.table
        {
            let start = u32::from(block.start);
            let end = start + u32::from(block.count); // exclusive
            let gap = u32::from(tag.address).saturating_sub(end);
            let new_end = end.max(tag.end() + 1);
            if gap <= u32::from(limits.max_gap) && new_end - start <= max {
                block.count = (new_end - start) as u16;
                block.tags.push(BlockTag {
                    id,
                    offset: tag.address - block.start,
                    span: tag.span,
                });
                continue;
            }
        }
        blocks.push(Block {
            table: tag.table,
            start: tag.address,
            count: tag.span,
            tags: vec![BlockTag {
                id,
                offset: 0,
                span: tag.span,
            }],
            previous: Vec::new(),
            all_good: false,
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::tag::{Access, Deadband};
    use crate::modbus::value::{ByteOrder, DataType};

    fn tag(table: Table, address: u16, data_type: DataType) -> Tag {
        Tag {
            name: format!("{table}{address}"),
            device: 0,
            scan_class: 0,
            table,
            address,
            bit: None,
            data_type,
            span: data_type.registers().unwrap_or(1),
            order: ByteOrder::ABCD,
            scaling: None,
            eng_range: None,
            units: None,
            deadband: Deadband::None,
            access: Access::Read,
            description: None,
        }
    }

    fn ids(tags: &[Tag]) -> impl Iterator<Item = (TagId, &Tag)> {
        tags.iter().enumerate().map(|(i, t)| (TagId(i as u32), t))
    }

    #[test]
    fn neighbours_coalesce_and_gaps_split() {
        let tags = vec![
            tag(Table::HoldingRegister, 0, DataType::F32),
            tag(Table::HoldingRegister, 2, DataType::U16),
            tag(Table::HoldingRegister, 10, DataType::F64), // gap of 7: joins with max_gap 10
            tag(Table::HoldingRegister, 100, DataType::U16), // far: new block
            tag(Table::InputRegister, 0, DataType::U16),
            tag(Table::Coil, 5, DataType::Bool),
            tag(Table::Coil, 0, DataType::Bool),
        ];
        let blocks = plan(ids(&tags), RequestLimits::default());
        let shape: Vec<(Table, u16, u16, usize)> = blocks
            .iter()
            .map(|b| (b.table, b.start, b.count, b.tags.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (Table::Coil, 0, 6, 2),
                (Table::InputRegister, 0, 1, 1),
                (Table::HoldingRegister, 0, 14, 3),
                (Table::HoldingRegister, 100, 1, 1),
            ]
        );
        assert_eq!(blocks[2].tags[2].offset, 10);
    }

    #[test]
    fn limits_cap_request_size() {
        let tags: Vec<Tag> = (0..300)
            .map(|i| tag(Table::HoldingRegister, i, DataType::U16))
            .collect();
        let blocks = plan(ids(&tags), RequestLimits::default());
        assert_eq!(
            blocks.iter().map(|b| b.count).collect::<Vec<_>>(),
            vec![125, 125, 50]
        );
        let limits = RequestLimits {
            max_registers: 10,
            max_bits: 2000,
            max_gap: 0,
        };
        let tags = vec![
            tag(Table::HoldingRegister, 0, DataType::U16),
            tag(Table::HoldingRegister, 2, DataType::U16),
        ];
        assert_eq!(plan(ids(&tags), limits).len(), 2, "gap 1 > max_gap 0");
        // A 4-register value never straddles two requests.
        let tags: Vec<Tag> = (0..3)
            .map(|i| tag(Table::HoldingRegister, i * 4, DataType::F64))
            .collect();
        let blocks = plan(ids(&tags), limits);
        assert_eq!(
            blocks.iter().map(|b| b.count).collect::<Vec<_>>(),
            vec![8, 4]
        );
    }

    #[test]
    fn split_halves_and_rebases_offsets() {
        let tags: Vec<Tag> = (0..5)
            .map(|i| tag(Table::HoldingRegister, 10 + i * 2, DataType::U16))
            .collect();
        let blocks = plan(ids(&tags), RequestLimits::default());
        assert_eq!(blocks.len(), 1);
        let (a, b) = blocks[0].split().unwrap();
        assert_eq!((a.start, a.count, a.tags.len()), (10, 3, 2));
        assert_eq!((b.start, b.count, b.tags.len()), (14, 5, 3));
        assert_eq!(
            b.tags.iter().map(|t| t.offset).collect::<Vec<_>>(),
            vec![0, 2, 4]
        );
        let (c, _) = a.split().unwrap();
        assert!(c.split().is_none());
    }
}
