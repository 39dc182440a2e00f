// The words of the citizens' pages (report, track, sprint) and of the 1022 console, in Vietnamese and English.

const WORDS = {
  vi: {
    report_title: "Phản ánh hiện trường · Đà Nẵng",
    report_lead: "Báo cho phường, xã của bạn một sự việc cần xử lý. Bạn sẽ nhận mã để theo dõi.",
    category: "Lĩnh vực", place: "Vị trí", pin_hint: "Chạm vào bản đồ để đánh dấu, hoặc",
    my_location: "Dùng vị trí của tôi", address: "Địa chỉ (kể cả địa chỉ cũ trước 2025)",
    description: "Mô tả", photos: "Ảnh (tối đa 3)", contact: "Liên hệ (không bắt buộc, chỉ phường xử lý thấy)",
    name: "Họ tên", phone: "Số điện thoại", email: "Email", send: "Gửi phản ánh", sending: "Đang gửi…",
    sent: "Đã nhận phản ánh. Mã theo dõi của bạn:", joined: "Sự việc này đã có người phản ánh: phản ánh của bạn được gộp vào.",
    deadline: "Hạn xử lý", track_link: "Theo dõi phản ánh", no_place: "Hãy đánh dấu vị trí, dùng vị trí của bạn, hoặc nhập địa chỉ.",
    too_many_photos: "Tối đa 3 ảnh.", error: "Không gửi được",
    track_title: "Theo dõi phản ánh", code: "Mã phản ánh", look: "Xem", not_found: "Không tìm thấy mã này.",
    state: "Trạng thái", handled_by: "Đơn vị xử lý", received: "Đã tiếp nhận", accepted: "Đã nhận xử lý",
    in_progress: "Đang xử lý", resolved: "Đã xử lý xong", closed: "Đã đóng", rejected: "Từ chối",
    hours_left: "Còn {h} giờ làm việc", overdue: "Quá hạn {h} giờ làm việc", reporters: "{n} người đã phản ánh",
    confirm: "Xác nhận đã xử lý", dispute: "Chưa xử lý xong", history: "Diễn biến",
    step_received: "Đã tiếp nhận phản ánh", step_joined: "Thêm một người phản ánh cùng sự việc",
    step_accept: "Đơn vị nhận xử lý", step_start: "Bắt đầu xử lý", step_resolve: "Đã xử lý xong",
    step_reject: "Từ chối", step_transfer: "Chuyển đơn vị xử lý", step_close: "Đã đóng",
    step_reopen: "Người dân báo chưa xử lý xong",
    sprint_title: "Chỉ số xử lý phản ánh theo phường, xã", period: "Kỳ", from: "Từ", to: "Đến",
    unit: "Đơn vị", received_n: "Tiếp nhận", resolved_n: "Đã xử lý", on_time: "Đúng hạn", on_time_share: "Tỷ lệ đúng hạn",
    median_h: "Trung vị (giờ làm việc)", p90_h: "P90 (giờ)", overdue_now: "Đang quá hạn", rank: "Hạng",
    download: "Tải dữ liệu:", hotline_title: "Tổng đài 1022 · nhập phản ánh", caller_phone: "Số người gọi",
    caller_name: "Tên người gọi", duplicates: "Có thể trùng với:", none_near: "Không có phản ánh đang mở gần đây.",
    entered: "Đã nhập. Đọc mã cho người gọi:", login: "Đăng nhập", username: "Tên đăng nhập", password: "Mật khẩu",
  },
  en: {
    report_title: "Report a problem · Da Nang",
    report_lead: "Tell your ward or commune about something that needs fixing. You will get a code to follow it.",
    category: "Category", place: "Place", pin_hint: "Tap the map to pin it, or",
    my_location: "Use my location", address: "Address (the pre-2025 form works too)",
    description: "Description", photos: "Photos (up to 3)", contact: "Contact (optional, seen only by the ward handling it)",
    name: "Name", phone: "Phone", email: "Email", send: "Send report", sending: "Sending…",
    sent: "Your report is in. Your tracking code:", joined: "Someone reported this already: your report joined theirs.",
    deadline: "To be handled by", track_link: "Follow your report", no_place: "Pin the place, use your location, or give an address.",
    too_many_photos: "Three photos at most.", error: "Could not send",
    track_title: "Follow a report", code: "Report code", look: "Look", not_found: "No report has this code.",
    state: "State", handled_by: "Handled by", received: "Received", accepted: "Accepted",
    in_progress: "In progress", resolved: "Resolved", closed: "Closed", rejected: "Rejected",
    hours_left: "{h} working hours left", overdue: "{h} working hours overdue", reporters: "{n} people reported it",
    confirm: "Confirm it is fixed", dispute: "It is not fixed", history: "What happened",
    step_received: "Report received", step_joined: "Another person reported the same",
    step_accept: "Accepted by the unit", step_start: "Work started", step_resolve: "Resolved",
    step_reject: "Rejected", step_transfer: "Handed to another unit", step_close: "Closed",
    step_reopen: "A reporter said it is not fixed",
    sprint_title: "How fast each ward and commune handles reports", period: "Period", from: "From", to: "To",
    unit: "Unit", received_n: "Received", resolved_n: "Resolved", on_time: "On time", on_time_share: "Share on time",
    median_h: "Median (working hours)", p90_h: "P90 (hours)", overdue_now: "Overdue now", rank: "Rank",
    download: "Download:", hotline_title: "1022 hotline · enter a report", caller_phone: "Caller's number",
    caller_name: "Caller's name", duplicates: "Possibly the same as:", none_near: "No open report nearby.",
    entered: "Entered. Read the code to the caller:", login: "Log in", username: "Username", password: "Password",
  },
};

export let lang = localStorage.getItem("ioc-lang") || (navigator.language?.startsWith("vi") === false ? "en" : "vi");

export function setLang(value) {
  lang = value;
  localStorage.setItem("ioc-lang", value);
  document.documentElement.lang = value;
}

export function t(key, values = {}) {
  const text = WORDS[lang][key] ?? WORDS.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => values[k] ?? "");
}

export function when(iso) {
  // The city's time, wherever the reader is: deadlines are office hours in Da Nang.
  return new Date(iso).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB",
    { dateStyle: "medium", timeStyle: "short", timeZone: "Asia/Ho_Chi_Minh" });
}

// Every element with data-t gets its words (and data-t-placeholder its placeholder).
export function label(root = document) {
  for (const el of root.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of root.querySelectorAll("[data-t-placeholder]")) el.placeholder = t(el.dataset.tPlaceholder);
}
